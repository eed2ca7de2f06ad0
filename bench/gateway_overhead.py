"""How much the gateway costs: a trivial FastAPI service hit directly and through it.

Starts the service (uvicorn, uvloop, httptools) and the gateway (``serve``) as
processes of their own, then loads both with ``wrk`` (``apt-get install wrk``):
requests per second at a concurrency of 64, and the median latency at 1.

    .venv/bin/python bench/gateway_overhead.py [--seconds 10] [--connections 64]
        [--workers N] [--service plain|kit]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bazaar.stack.ports import free_port, port_open

REPO = Path(__file__).resolve().parents[1]
PATH = "/api/catalog/items/ping"


def service_app():  # type: ignore[no-untyped-def]
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(PATH)
    async def ping() -> dict[str, object]:
        return {"id": "ping", "title": "A trivial answer", "price": 1250, "currency": "USD"}

    return app


def kit_service_app():  # type: ignore[no-untyped-def]
    """The same answer from an app built like the services (request context, metrics)."""
    from contextlib import asynccontextmanager

    from fastapi import APIRouter

    from bazaar.kit.http import create_service_app

    router = APIRouter()

    @router.get(PATH)
    async def ping() -> dict[str, object]:
        return {"id": "ping", "title": "A trivial answer", "price": 1250, "currency": "USD"}

    @asynccontextmanager
    async def lifespan(app):  # type: ignore[no-untyped-def]
        yield

    return create_service_app("catalog", title="bench", routers=[router], lifespan=lifespan)


def start(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env})
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{command} did not start")
        time.sleep(0.1)
    return process


def wrk(url: str, connections: int, seconds: int) -> tuple[float, float]:
    """(requests per second, median latency in ms)."""
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    median = re.search(r"50%\s+([\d.]+)(us|ms|s)", output)
    assert median is not None, output
    value, unit = float(median.group(1)), median.group(2)
    return rps, value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, help="gateway processes (default: its setting)")
    parser.add_argument(
        "--service",
        choices=["plain", "kit"],
        default="plain",
        help="plain FastAPI, or an app made by bazaar.kit.http.create_service_app",
    )
    arguments = parser.parse_args()

    service_port, gateway_port = free_port(), free_port()
    factory = "kit_service_app" if arguments.service == "kit" else "service_app"
    service = start(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", f"bench.gateway_overhead:{factory}"),
            *("--port", str(service_port), "--loop", "uvloop", "--http", "httptools"),
            *("--no-access-log", "--log-level", "warning"),
        ],
        {"PYTHONPATH": str(REPO)},
        service_port,
    )
    gateway = start(
        [sys.executable, "-c", "from bazaar.gateway.app import serve; serve()"],
        {
            "BAZAAR_GATEWAY_PORT": str(gateway_port),
            "BAZAAR_GATEWAY_UPSTREAMS": json.dumps(
                {"catalog": [f"http://127.0.0.1:{service_port}"]}
            ),
            "BAZAAR_LOG_LEVEL": "WARNING",
            **({"BAZAAR_GATEWAY_WORKERS": str(arguments.workers)} if arguments.workers else {}),
        },
        gateway_port,
    )
    try:
        direct_url = f"http://127.0.0.1:{service_port}{PATH}"
        gateway_url = f"http://127.0.0.1:{gateway_port}{PATH}"
        for url in (direct_url, gateway_url):  # warm up
            wrk(url, 8, 2)
        results = {}
        for name, url in (("direct", direct_url), ("gateway", gateway_url)):
            rps, _ = wrk(url, arguments.connections, arguments.seconds)
            _, median = wrk(url, 1, arguments.seconds)
            results[name] = (rps, median)
            print(
                f"{name:8} {rps:9.0f} req/s at c={arguments.connections}"
                f"   p50 {median:.3f} ms at c=1"
            )
        ratio = results["gateway"][0] / results["direct"][0]
        added = results["gateway"][1] - results["direct"][1]
        print(f"gateway/direct throughput {ratio:.1%}; added p50 at c=1: {added:.3f} ms")
    finally:
        for process in (gateway, service):
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
