"""The gateway's composition root: ``create_app`` wires it, ``serve`` runs it on uvloop.

Start it with ``serve(GatewaySettings(), PlatformSettings())`` (what ``bazaar serve
gateway`` is for), configured by ``BAZAAR_GATEWAY_*`` and the platform's ``BAZAAR_*``
variables.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator

import uvloop
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from bazaar.gateway.api import GATEWAY, add_routes
from bazaar.gateway.runtime import Gateway
from bazaar.gateway.settings import GatewaySettings
from bazaar.kit.config import PlatformSettings
from bazaar.kit.logging import configure_logging, get_logger
from bazaar.kit.telemetry import configure_tracing

log = get_logger(__name__)

# A proxied request leaves a few hundred short-lived containers behind (request and
# response objects, futures, header dicts), freed by reference counting; at CPython's
# default gen-0 threshold (700) the cyclic collector still ran every few requests.
GC_THRESHOLDS = (20_000, 20, 20)
SERVER_NAME = "bazaar"


class MalformedRequestsAreInfo(logging.Filter):
    """aiohttp logs every request it cannot parse (a bad header, a line too long) as an
    error with a traceback. On a public port that is the client's doing, not the
    gateway's, and anyone could fill the error log with it: such a record becomes one
    INFO line that names the problem (aiohttp still answers 400)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "client_request_malformed: %s", (error.message,)
            record.exc_info = record.exc_text = None
        return True


def create_app(
    settings: GatewaySettings | None = None, platform: PlatformSettings | None = None
) -> web.Application:
    """The gateway app; nothing connects until it starts serving."""
    settings = settings or GatewaySettings()
    platform = platform or PlatformSettings()
    gateway = Gateway(settings, platform)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[GATEWAY] = gateway

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_response_prepare.append(_name_no_software)
    add_routes(app)
    return app


async def _name_no_software(_: web.Request, response: web.StreamResponse) -> None:
    """Every answer names the gateway, not the library and version behind it (aiohttp
    would say ``Python/3.11 aiohttp/3.14.5``: a scanner's first hint). The services send
    no Server header of their own (uvicorn's is off)."""
    response.headers[hdrs.SERVER] = SERVER_NAME


async def run(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    parent_pid: int | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT (no access log: metrics count the requests).

    A worker (``parent_pid`` set) also stops when its parent is gone, so a killed
    gateway never leaves workers holding the port.
    """
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, host, port, backlog=1024, reuse_address=True, reuse_port=reuse_port or None
        )
        await site.start()
        log.info("gateway_listening", host=host, port=port, pid=os.getpid())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        orphan_watch = None
        if parent_pid is not None:
            orphan_watch = asyncio.create_task(_stop_when_orphaned(parent_pid, stop))
        await stop.wait()
        if orphan_watch is not None:
            orphan_watch.cancel()
        log.info("gateway_stopping", pid=os.getpid())
    finally:
        await runner.cleanup()


async def _stop_when_orphaned(parent_pid: int, stop: asyncio.Event) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(1.0)
    log.warning("gateway_parent_gone", parent_pid=parent_pid)
    stop.set()


def serve(
    settings: GatewaySettings | None = None, platform: PlatformSettings | None = None
) -> None:
    """Run the gateway on ``settings.host:settings.port`` with uvloop until interrupted.

    With ``workers`` > 1, that many processes share the port (SO_REUSEPORT), each a
    whole gateway with its own pools, health checks and caches.
    """
    settings = settings or GatewaySettings()
    platform = platform or PlatformSettings()
    if settings.workers <= 1:
        _serve_one(settings, platform, reuse_port=False)
        return
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_serve_one,
            args=(settings, platform),
            kwargs={"reuse_port": True, "parent_pid": os.getpid()},
            name=f"gateway-worker-{number}",
            daemon=True,
        )
        for number in range(1, settings.workers)
    ]
    for worker in workers:
        worker.start()
    try:
        _serve_one(settings, platform, reuse_port=True)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(timeout=10)


def _serve_one(
    settings: GatewaySettings,
    platform: PlatformSettings,
    *,
    reuse_port: bool,
    parent_pid: int | None = None,
) -> None:
    configure_logging("gateway", platform.log_format, platform.log_level)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestsAreInfo())
    configure_tracing("gateway", platform.otlp_endpoint)
    app = create_app(settings, platform)
    tune_gc()
    uvloop.run(run(app, settings.host, settings.port, reuse_port=reuse_port, parent_pid=parent_pid))


def tune_gc() -> None:
    """Collect cycles less often, and never rescan what start-up loaded (modules, tables).

    Process-wide, so only for a serving process (not for apps made in tests).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


if __name__ == "__main__":
    serve()
