"""The CloudEvents 1.0 envelope (structured JSON mode) every message travels in.

Besides the required attributes, three extensions carry what crosses services:
``correlationid`` (the saga's id, so support can link an order to its payment),
``traceparent`` (W3C trace context) and ``userid`` (whose operation this is), plus
``requestid`` from the HTTP request that started it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from bazaar.kit.requestcontext import current_correlation_id, current_request_id
from bazaar.kit.telemetry import current_traceparent, new_traceparent


class Envelope(BaseModel):
    """One message: an event (``bazaar.orders.order.confirmed``) or a command."""

    model_config = ConfigDict(frozen=True)

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    correlationid: str | None = None
    traceparent: str | None = None
    userid: str | None = None
    requestid: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)


def new_envelope(
    *,
    source: str,
    type: str,
    data: BaseModel | dict[str, Any],
    subject: str | None = None,
    correlation_id: str | None = None,
    user_id: str | uuid.UUID | None = None,
    dataschema: str | None = None,
) -> Envelope:
    """An envelope for a new message, carrying the trace and request of the current context."""
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return Envelope(
        source=source,
        type=type,
        subject=subject,
        dataschema=dataschema,
        correlationid=correlation_id or current_correlation_id.get(),
        traceparent=new_traceparent(current_traceparent.get()),
        userid=str(user_id) if user_id is not None else None,
        requestid=current_request_id.get(),
        data=payload,
    )
