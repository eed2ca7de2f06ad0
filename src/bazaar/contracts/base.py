"""The base of every event and command schema."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """An event or command body; the class names its CloudEvents ``type`` and its topic."""

    model_config = ConfigDict(frozen=True)

    TYPE: ClassVar[str]
    TOPIC: ClassVar[str]
    VERSION: ClassVar[int] = 1

    @classmethod
    def dataschema(cls) -> str:
        return f"urn:bazaar:{cls.TYPE}:v{cls.VERSION}"
