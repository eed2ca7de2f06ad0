"""One supervised child process: a replica of a service, the payment sandbox or the gateway.

Each child runs in its own session (so its own process group): a Ctrl-C on the
terminal reaches only the supervisor, which then stops the children in order, and a
signal sent to the group reaches anything the child started too.

The child's output (stdout and stderr, merged) is read by a thread, not by the event
loop: a test that holds a stack while its loop is idle must not leave a child blocked
on a full pipe. The thread hands each line to the output and tells the loop when the
child has exited; the loop decides whether to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import httpx

from bazaar.stack.services import ServiceSpec

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
# A child that ran this long before dying is restarted without delay growth.
STABLE_AFTER_SECONDS = 30.0


class StackOutput(Protocol):
    """Where the stack's output goes: children's log lines and the supervisor's own news."""

    def line(self, process: str, text: str) -> None: ...

    def event(self, text: str, *, level: str = "info") -> None: ...


class ProcessFailed(RuntimeError):
    """A child exited or stayed unhealthy while the stack waited for it."""

    def __init__(self, message: str, recent: Sequence[str] = ()) -> None:
        tail = "\n".join(recent[-40:])
        super().__init__(f"{message}\n--- its last output ---\n{tail}" if tail else message)


class ManagedProcess:
    """A child process the stack starts, watches, restarts and stops.

    ``replica`` counts from 1, as in the log prefix (``[catalog.1]``). While
    ``supervised`` and ``wanted`` are true, an exit nobody asked for is reported and the
    child is started again after a growing delay.
    """

    def __init__(
        self,
        spec: ServiceSpec,
        replica: int,
        port: int,
        command: Sequence[str],
        env: Mapping[str, str],
        output: StackOutput,
        on_spawn: Callable[[ManagedProcess], None] | None = None,
    ) -> None:
        self.spec = spec
        self.replica = replica
        self.port = port
        self.command = list(command)
        self.env = dict(env)
        self.name = f"{spec.name}.{replica}"
        self.recent: deque[str] = deque(maxlen=200)
        self.restarts = 0
        self.returncode: int | None = None
        self.wanted = False
        self.supervised = False
        self._output = output
        self._on_spawn = on_spawn
        self._popen: subprocess.Popen[bytes] | None = None
        self._exited = asyncio.Event()
        self._exited.set()
        self._started_at = 0.0
        self._backoff = FIRST_BACKOFF_SECONDS
        self._restart_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} port={self.port}>"

    @property
    def service(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and not self._exited.is_set()

    # --- starting ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the child (no-op when it runs); it is restarted on death once supervised."""
        self.wanted = True
        self._cancel_restart()
        if not self.running:
            self._spawn()

    def _spawn(self) -> None:
        self._loop = asyncio.get_running_loop()
        exited = asyncio.Event()
        popen = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._popen = popen
        self._exited = exited
        self.returncode = None
        self._started_at = time.monotonic()
        threading.Thread(
            target=self._pump,
            args=(popen, exited, self._loop),
            name=f"bazaar-output-{self.name}",
            daemon=True,
        ).start()
        if self._on_spawn is not None:
            self._on_spawn(self)

    def _pump(
        self,
        popen: subprocess.Popen[bytes],
        exited: asyncio.Event,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Thread: forward the child's lines until it closes its output, then report its exit."""
        assert popen.stdout is not None
        for raw in iter(popen.stdout.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.recent.append(text)
            try:
                self._output.line(self.name, text)
            except OSError:
                # The terminal went away (``bazaar up | head``): keep draining the child's
                # pipe so it never blocks, and keep noticing its exit.
                pass
        popen.stdout.close()
        code = popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(self._on_exit, popen, exited, code)

    def _on_exit(self, popen: subprocess.Popen[bytes], exited: asyncio.Event, code: int) -> None:
        exited.set()
        if popen is not self._popen:
            return
        self.returncode = code
        if not (self.wanted and self.supervised):
            return
        ran = time.monotonic() - self._started_at
        if ran >= STABLE_AFTER_SECONDS:
            self._backoff = FIRST_BACKOFF_SECONDS
        delay = self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
        self._output.event(
            f"{self.name} (pid {popen.pid}) exited unexpectedly with {describe_exit(code)} "
            f"after {ran:.1f}s; restarting in {delay:.1f}s",
            level="error",
        )
        self._restart_task = asyncio.get_running_loop().create_task(
            self._restart_after(delay), name=f"restart {self.name}"
        )

    async def _restart_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self.wanted or self.running:
            return
        self.restarts += 1
        self._spawn()
        self._output.event(f"{self.name} restarted (pid {self.pid})", level="warning")

    def _cancel_restart(self) -> None:
        if self._restart_task is not None and not self._restart_task.done():
            self._restart_task.cancel()
        self._restart_task = None

    # --- health ------------------------------------------------------------------------

    async def healthy(self, client: httpx.AsyncClient) -> bool:
        """Whether every health path answers 200 right now."""
        for path in self.spec.health_paths():
            try:
                response = await client.get(f"{self.url}{path}", timeout=2.0)
            except httpx.HTTPError:
                return False
            if response.status_code != 200:
                return False
        return True

    async def wait_healthy(self, client: httpx.AsyncClient, timeout: float) -> None:
        """Wait until the child answers its health paths; ProcessFailed if it dies or hangs."""
        deadline = time.monotonic() + timeout
        while True:
            restarting = self._restart_task is not None and not self._restart_task.done()
            if not self.running and not restarting:
                raise ProcessFailed(
                    f"{self.name} exited with {describe_exit(self.returncode)} while starting",
                    list(self.recent),
                )
            if self.running and await self.healthy(client):
                return
            if time.monotonic() > deadline:
                raise ProcessFailed(
                    f"{self.name} did not become healthy within {timeout:.0f}s "
                    f"({', '.join(self.spec.health_paths())} on {self.url})",
                    list(self.recent),
                )
            await asyncio.sleep(0.1)

    # --- stopping ----------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child's whole process group (nothing when it is gone)."""
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM) and not to come back."""
        self.wanted = False
        self._cancel_restart()
        self.send_signal(signal.SIGTERM)

    async def wait_exited(self, timeout: float | None = None) -> bool:
        """Wait for the child's exit; False when it still runs after ``timeout``."""
        try:
            await asyncio.wait_for(self._exited.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; the group is swept either way."""
        self.terminate()
        if not await self.wait_exited(timeout):
            self._output.event(
                f"{self.name} did not stop within {timeout:.0f}s; killing it", level="warning"
            )
            self.send_signal(signal.SIGKILL)
            await self.wait_exited(5.0)
        # Anything the child started in its group must not outlive it.
        self.send_signal(signal.SIGKILL)

    async def kill(
        self,
        sig: int = signal.SIGKILL,
        *,
        restart: bool = False,
        wait: bool | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Deliver ``sig`` to the child's group, as a crash or an operator would.

        Without ``restart`` the child stays down until :meth:`start`; with it, the
        supervisor sees an unexpected exit and brings it back (after its backoff).
        ``wait`` (default: unless ``sig`` does not end a process, like SIGSTOP) waits
        up to ``timeout`` for the exit.
        """
        if not restart:
            self.wanted = False
            self._cancel_restart()
        self.send_signal(sig)
        if wait is None:
            wait = sig not in _NON_TERMINATING
        if wait:
            await self.wait_exited(timeout)


_NON_TERMINATING = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGCONT, signal.SIGWINCH})


def describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
