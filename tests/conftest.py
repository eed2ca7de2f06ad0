"""Fixtures for every tier: the real parts come from :mod:`bazaar.kit.testing`."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["bazaar.kit.testing"]

E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests share one running stack: under ``pytest -n``, one worker runs them
    all (``--dist loadgroup``) while the others take the unit and integration tiers.
    Tests marked ``runs_last`` leave that stack full of what they sent, so they run after
    every other test."""
    for item in items:
        if E2E in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.xdist_group("e2e"))
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)
