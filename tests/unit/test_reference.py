"""The reference pages in docs/ are the ones the code would write today."""

from __future__ import annotations

from pathlib import Path

from bazaar.reference import configuration_markdown, events_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_docs_events_md_lists_every_message_the_contracts_define() -> None:
    assert (DOCS / "events.md").read_text() == events_markdown(), (
        "docs/events.md is stale: run `bazaar dev docs`"
    )


def test_docs_configuration_md_lists_every_setting() -> None:
    assert (DOCS / "configuration.md").read_text() == configuration_markdown(), (
        "docs/configuration.md is stale: run `bazaar dev docs`"
    )
