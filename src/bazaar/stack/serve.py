"""``bazaar serve <service>``: run one service process from its environment (production mode).

FastAPI services run under uvicorn with uvloop and httptools, no access log (the
services log what matters) and their lifespan on; the gateway runs its own aiohttp
server. SIGTERM (or SIGINT) shuts down gracefully: uvicorn stops accepting, lets
requests in flight finish (up to :data:`GRACEFUL_SHUTDOWN_SECONDS`, which also cuts
long event streams) and runs the lifespan's shutdown.

Started by ``bazaar up``, a process also exits when its supervisor goes away, so a
supervisor killed by SIGKILL leaves no orphaned services behind.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from bazaar.kit.config import PlatformSettings
from bazaar.kit.logging import configure_logging
from bazaar.kit.telemetry import configure_tracing
from bazaar.stack.services import ServiceSpec

GRACEFUL_SHUTDOWN_SECONDS = 10
# uvicorn's code for "the app did not start" (its lifespan failed, the port was taken).
STARTUP_FAILURE = 3


def load_object(reference: str) -> Callable[..., Any]:
    """``"package.module:name"`` → the object it names."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"not a 'module:name' reference: {reference!r}")
    target = getattr(importlib.import_module(module_name), attribute)
    if not callable(target):
        raise TypeError(f"{reference} is not callable")
    return target  # type: ignore[no-any-return]


def listen_address(spec: ServiceSpec) -> tuple[str, int]:
    """Host and port from ``BAZAAR_<SERVICE>_HOST`` / ``_PORT`` (the service's own defaults)."""
    host = os.environ.get(f"{spec.env_prefix}HOST", "127.0.0.1")
    raw_port = os.environ.get(f"{spec.env_prefix}PORT", str(spec.default_port))
    try:
        port = int(raw_port)
    except ValueError:
        raise ValueError(f"{spec.env_prefix}PORT is not a port number: {raw_port!r}") from None
    return host, port


def serve(spec: ServiceSpec) -> int:
    """Run ``spec``'s process until it is told to stop; the exit code."""
    platform = PlatformSettings()
    configure_logging(spec.name, platform.log_format, platform.log_level)
    configure_tracing(spec.name, platform.otlp_endpoint)
    # Services import Alembic (through bazaar.kit.db) but never migrate while serving;
    # it announces its plugins at INFO when first imported: noise.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    _exit_with_supervisor()
    target = load_object(spec.factory)
    if spec.kind == "main":
        # SIGTERM ends it the way Ctrl-C does: the server's own shutdown (finally blocks,
        # cleanup contexts) runs instead of the process vanishing mid-request.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            target()
        except KeyboardInterrupt:
            pass
        return 0
    import uvicorn

    host, port = listen_address(spec)
    server = uvicorn.Server(
        uvicorn.Config(
            target(),
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            lifespan="on",
            # Logging is configured above (structlog); uvicorn must not replace it.
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    )
    server.run()
    return 0 if server.started else STARTUP_FAILURE


def _exit_with_supervisor() -> None:
    """When ``BAZAAR_SUPERVISOR_PID`` names our parent, stop gracefully once it is gone."""
    supervisor = os.environ.get("BAZAAR_SUPERVISOR_PID")
    if not supervisor or not supervisor.isdigit() or os.getppid() != int(supervisor):
        return

    def watch(parent: int) -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        # Our output went to the supervisor through a pipe nobody reads any more: a write
        # would raise BrokenPipeError in whatever logs next, shutdown included.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(
        target=watch, args=(int(supervisor),), name="supervisor-watch", daemon=True
    ).start()
