"""The layout of a data directory and the embedded server that lives in it.

```
<data-dir>/
  pg/            the embedded PostgreSQL's data (kept across restarts)
  psp_sandbox/   the payment sandbox's ledger
  secrets.json   service client secrets and auth's signing-key passphrase (mode 0600)
  stack.json     while ``bazaar up`` runs: its processes, ports and URLs
  .lock          held by the running ``bazaar up``
```
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.engine import URL

from bazaar.stack.postgres import EmbeddedPostgres

DEFAULT_DATA_DIR = ".bazaar"
PG_DIR = "pg"
STATE_FILE = "stack.json"
LOCK_FILE = ".lock"
# Database names on the embedded server: ``bazaar_<service>``.
EMBEDDED_DATABASE_PREFIX = "bazaar"


def default_data_dir() -> Path:
    return Path(os.environ.get("BAZAAR_DATA_DIR", DEFAULT_DATA_DIR))


def database_name(prefix: str, service: str) -> str:
    return f"{prefix}_{service}"


@asynccontextmanager
async def embedded_server(data_dir: Path) -> AsyncIterator[URL]:
    """The admin URL of a data directory's PostgreSQL, for a command that needs it briefly.

    Attaches to the server of a running ``bazaar up``; otherwise starts it and stops it
    again afterwards.
    """
    server = EmbeddedPostgres(data_dir / PG_DIR)
    url = await asyncio.to_thread(server.start)
    try:
        yield url
    finally:
        if server.started_here:
            await asyncio.to_thread(server.stop)
