"""Platform apps as real processes (uvicorn on a free port, output kept in a file), for
tests that stop, restart or kill them: the payment provider sandbox, and payments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from bazaar.kit.testing import wait_for
from bazaar.stack.ports import free_port


class AppProcess:
    """``app_factory`` (``module:function``) served by uvicorn with ``env`` added to the
    environment; started when ``ready_path`` answers 200."""

    def __init__(
        self, app_factory: str, env: dict[str, str], output: Path, *, ready_path: str
    ) -> None:
        self.app_factory = app_factory
        self.env = env
        self.output = output
        self.ready_path = ready_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._spawn()
        await wait_for(
            self._ready, timeout=30, message=f"{self.app_factory} to answer {self.ready_path}"
        )

    def _spawn(self) -> None:
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    self.app_factory,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env={**os.environ, **self.env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.app_factory} exited with {self.process.returncode}: "
                f"{self.output.read_text(errors='replace')[-3000:]}"
            )
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                response = await client.get(f"{self.url}{self.ready_path}")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within 15 s."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, like a machine losing power."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    async def restart(self) -> None:
        self.stop()
        await self.start()

    def captured_output(self) -> bytes:
        return self.output.read_bytes()


class SandboxProcess(AppProcess):
    """The payment provider sandbox over a data directory; restartable on its port."""

    def __init__(
        self,
        data_dir: Path,
        output: Path,
        *,
        api_key: str,
        slow_card_delay_seconds: float,
        log_level: str | None = None,
    ) -> None:
        env = {
            "BAZAAR_PSP_SANDBOX_DATA_DIR": str(data_dir),
            "BAZAAR_PSP_SANDBOX_SLOW_CARD_DELAY_SECONDS": str(slow_card_delay_seconds),
            "BAZAAR_PSP_SANDBOX_API_KEY": api_key,
            "BAZAAR_LOG_FORMAT": "json",
        }
        if log_level is not None:
            env["BAZAAR_LOG_LEVEL"] = log_level
        super().__init__("bazaar.psp_sandbox.app:create_app", env, output, ready_path="/healthz")
        self.data_dir = data_dir
        self.api_key = api_key

    def client(self, timeout: float = 10.0) -> httpx.AsyncClient:
        """A client of the sandbox's API, with its key."""
        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=timeout,
        )

    async def charges(self, key: str | None = None) -> list[dict[str, Any]]:
        """The sandbox's own ledger: every charge it made (under ``key``, if given)."""
        params = {"idempotency_key": key} if key else {}
        async with self.client(timeout=30) as client:
            response = await client.get("/v1/charges", params=params)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items
