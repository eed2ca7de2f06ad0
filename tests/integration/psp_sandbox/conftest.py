"""The sandbox as a real process: uvicorn on a free port, its output kept in a file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bazaar.kit.testing import wait_for
from bazaar.stack.ports import free_port

API_KEY = "sk_test_integration"
SLOW_CARD_DELAY_SECONDS = 2.0


class SandboxProcess:
    """One sandbox process over a data directory; restartable on the same port."""

    def __init__(self, data_dir: Path, output: Path) -> None:
        self.data_dir = data_dir
        self.output = output
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 10.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=timeout,
        )

    async def start(self) -> None:
        self._spawn()
        await wait_for(self._healthy, timeout=30, message="the sandbox to answer /healthz")

    def _spawn(self) -> None:
        env = {
            **os.environ,
            "BAZAAR_PSP_SANDBOX_DATA_DIR": str(self.data_dir),
            "BAZAAR_PSP_SANDBOX_SLOW_CARD_DELAY_SECONDS": str(SLOW_CARD_DELAY_SECONDS),
            "BAZAAR_PSP_SANDBOX_API_KEY": API_KEY,
            # The most talkative logging: the card number must not show even there.
            "BAZAAR_LOG_LEVEL": "DEBUG",
            "BAZAAR_LOG_FORMAT": "json",
        }
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "bazaar.psp_sandbox.app:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"the sandbox exited with {self.process.returncode}: "
                f"{self.output.read_text(errors='replace')[-2000:]}"
            )
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                response = await client.get(f"{self.base_url}/healthz")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    async def restart(self) -> None:
        self.stop()
        await self.start()

    def captured_output(self) -> bytes:
        return self.output.read_bytes()


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxProcess]:
    process = SandboxProcess(tmp_path / "data", tmp_path / "sandbox.log")
    await process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(sandbox: SandboxProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox.client() as client:
        yield client
