"""The sandbox as a real process (:class:`tests.integration.sandbox.SandboxProcess`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.processes import SandboxProcess

API_KEY = "sk_test_integration"
SLOW_CARD_DELAY_SECONDS = 2.0


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxProcess]:
    # The most talkative logging: the card number must not show even there.
    process = SandboxProcess(
        tmp_path / "data",
        tmp_path / "sandbox.log",
        api_key=API_KEY,
        slow_card_delay_seconds=SLOW_CARD_DELAY_SECONDS,
        log_level="DEBUG",
    )
    await process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(sandbox: SandboxProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox.client() as client:
        yield client
