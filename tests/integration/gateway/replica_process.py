"""An echo replica in a process of its own, for tests that kill a replica.

``python -m tests.integration.gateway.replica_process --port N --name a``
"""

from __future__ import annotations

import argparse

from aiohttp import web

from tests.integration.gateway.standins import EchoUpstream


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    arguments = parser.parse_args()
    upstream = EchoUpstream(arguments.name)
    web.run_app(upstream.app, host="127.0.0.1", port=arguments.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
