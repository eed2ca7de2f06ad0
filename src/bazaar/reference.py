"""The reference pages made from code: ``docs/events.md`` and ``docs/configuration.md``.

Written by ``bazaar dev docs`` and checked by a test, so that the list of messages and
settings a reader finds in ``docs/`` is the one the code has. Comments above a settings
field become its description.
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings

from bazaar.contracts.base import Message
from bazaar.contracts.topics import ALL_TOPICS, SUBSCRIPTIONS

CONTRACT_MODULES = ("auth", "catalog", "orders", "payments", "auctions", "support")
SETTINGS = (
    ("Every process", "bazaar.kit.config", "PlatformSettings"),
    ("gateway", "bazaar.gateway.settings", "GatewaySettings"),
    ("auth", "bazaar.auth.settings", "AuthSettings"),
    ("catalog", "bazaar.catalog.settings", "CatalogSettings"),
    ("orders", "bazaar.orders.settings", "OrdersSettings"),
    ("payments", "bazaar.payments.settings", "PaymentsSettings"),
    ("auctions", "bazaar.auctions.settings", "AuctionsSettings"),
    ("support", "bazaar.support.settings", "SupportSettings"),
    ("portal", "bazaar.portal.settings", "PortalSettings"),
    ("psp sandbox", "bazaar.psp_sandbox.settings", "PspSandboxSettings"),
)


def _messages() -> Iterator[type[Message]]:
    for name in CONTRACT_MODULES:
        module = importlib.import_module(f"bazaar.contracts.{name}")
        for _, value in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(value, Message)
                and value.__module__ == module.__name__
                and value.TYPE.count(".") >= 3
            ):
                yield value


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    text = re.sub(r"\b(typing|uuid|datetime|bazaar\.contracts\.\w+)\.", "", text)
    text = text.replace("<class '", "").replace("'>", "")
    return text.replace("|", "\\|")


def events_markdown() -> str:
    """Every topic with its producer and consumers, and every message with its fields."""
    lines = [
        "# Events and commands",
        "",
        "Generated from `src/bazaar/contracts/` by `bazaar dev docs`; do not edit by hand.",
        "Every message travels in a CloudEvents 1.0 envelope (`bazaar.kit.messaging.envelope`)",
        "with `correlationid`, `traceparent`, `userid` and `requestid`; `dataschema` is",
        "`urn:bazaar:<type>:v<version>`. Topics are created with the deployment's",
        "`BAZAAR_TOPIC_PREFIX` in front.",
        "",
        "## Topics",
        "",
        "| topic | consumed by (consumer group) |",
        "| --- | --- |",
    ]
    for topic in ALL_TOPICS:
        groups = sorted(group for group, topics in SUBSCRIPTIONS.items() if topic in topics)
        lines.append(f"| `{topic}` | {', '.join(groups) or '—'} |")
    lines += ["", "## Messages", ""]
    current_topic = ""
    for message in sorted(_messages(), key=lambda m: (m.TOPIC, m.TYPE)):
        if current_topic != message.TOPIC:
            current_topic = message.TOPIC
            lines += [f"### `{current_topic}`", ""]
        doc = inspect.getdoc(message) or ""
        own_doc = doc if message.__doc__ else ""
        lines.append(f"#### `{message.TYPE}` (v{message.VERSION}) — `{message.__name__}`")
        lines.append("")
        if own_doc:
            lines += [" ".join(own_doc.split()), ""]
        lines += ["| field | type |", "| --- | --- |"]
        for name, field in message.model_fields.items():
            lines.append(f"| `{name}` | `{_type_name(field.annotation)}` |")
        lines.append("")
    return "\n".join(lines)


def _field_comments(cls: type[BaseModel]) -> dict[str, str]:
    """Comments written directly above each field in the class body, by field name."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for raw in source.splitlines():
            line = raw.strip()
            if line.startswith("#"):
                text = line.lstrip("# ")
                if not text.startswith("---"):  # a section divider, not a description
                    pending.append(text)
                continue
            match = re.match(r"^([a-z_][a-z0-9_]*)\s*:", line)
            if match and pending:
                comments[match.group(1)] = " ".join(pending)
            pending = []
    return comments


def _env_name(cls: type[BaseSettings], name: str, field: Any) -> str:
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias
    prefix = str(cls.model_config.get("env_prefix", ""))
    return f"{prefix}{name}".upper()


def _default(field: Any) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "(secret)" if value.get_secret_value() else "(empty)"
    if value is None:
        return "—"
    if isinstance(value, dict | list | tuple | types.MappingProxyType) and not value:
        return "(empty)"
    return f"`{value}`"


def configuration_markdown() -> str:
    lines = [
        "# Configuration",
        "",
        "Generated from the settings classes by `bazaar dev docs`; do not edit by hand.",
        "Every setting is an environment variable. `bazaar up` sets the ones that wire the",
        "processes together (URLs, ports, databases, client credentials); production sets",
        "them for `bazaar serve SERVICE`. Secrets are `SecretStr` and never logged.",
        "",
    ]
    for title, module_name, class_name in SETTINGS:
        cls = getattr(importlib.import_module(module_name), class_name)
        comments = _field_comments(cls)
        lines += [
            f"## {title} (`{class_name}`)",
            "",
            "| variable | default | notes |",
            "| --- | --- | --- |",
        ]
        for name, field in cls.model_fields.items():
            note = field.description or comments.get(name, "")
            note = note.replace("|", "\\|")
            lines.append(f"| `{_env_name(cls, name, field)}` | {_default(field)} | {note} |")
        lines.append("")
    return "\n".join(lines)


def write_reference(docs: Path) -> list[Path]:
    written = []
    for name, text in (
        ("events.md", events_markdown()),
        ("configuration.md", configuration_markdown()),
    ):
        path = docs / name
        path.write_text(text)
        written.append(path)
    return written
