"""Nothing a client can send through the gateway is answered with a server error.

Schemathesis reads the gateway's merged OpenAPI document and sends, to every operation
and as each role, what it derives from it: the documented examples, the edges of every
constraint, and random values (text with NUL characters, huge numbers, unknown or
missing parameters, wrong methods). Any 5xx answer fails the test, with the request
that caused it.

Deeper runs of the same kind (more examples, other seeds) found a NUL character
answered 500 in payments and support, a support action failing once a connection had
planned its insert for any value, and the gateway leaving a connection deaf after an
answer of over 64 KiB (504 ten seconds later); each now has a test of its own. This run
is the broad guard, repeatable by default (a fixed seed, no example database);
``BAZAAR_FUZZ_SEED`` and ``BAZAAR_FUZZ_EXAMPLES`` make it another or a deeper one (the
seed of a failing run is in its report). It leaves the stack full of what it created,
so it runs after every other test (``runs_last``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import MakeUser

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Streams never end; revoking the caller's token, or changing roles (which revokes the
# tokens of the user changed), would leave the rest of the run answered 401.
EXCLUDED_PATHS = "stream|revoke|/roles"
EXAMPLES_PER_OPERATION = int(os.environ.get("BAZAAR_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("BAZAAR_FUZZ_SEED", "4242")
RUN_TIMEOUT_SECONDS = 240


@pytest.mark.runs_last
@pytest.mark.parametrize("role", ["customer", "seller", "support", "admin"])
async def test_no_request_a_client_can_send_is_answered_with_a_server_error(
    stack: Stack, make_user: MakeUser, role: str, tmp_path: Path
) -> None:
    user = await make_user(role)
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{stack.gateway_url}/api/openapi.json",
        "--url",
        stack.gateway_url,
        "--header",
        f"Authorization: Bearer {user.token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--exclude-path-regex",
        EXCLUDED_PATHS,
        "--request-timeout",
        "20",
        "--workers",
        "1",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Schemathesis keeps a cache of what it found under its working directory.
        cwd=tmp_path,
    )
    output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_SECONDS)
    report = output.decode(errors="replace")
    # The report names every failing operation with a curl line to replay it (the token
    # is filtered out of it).
    assert process.returncode == 0, report[-8000:]
    assert " passed" in report and " generated" in report, report[-2000:]
