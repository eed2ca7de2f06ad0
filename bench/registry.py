"""The benchmarks ``make bench`` knows: name → the module that runs it.

Adding a benchmark is adding its line here. The module exposes ``main(argv)`` that
returns a :class:`bench.harness.Report` (printed with the machine and the command,
and written to its section of ``docs/benchmarks.md``); a ``main()`` without
arguments (an argparse script) also works: the harness hands it ``sys.argv`` and
records what it printed. ``python -m bench`` runs every benchmark, in this order.
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "gateway": "bench.gateway",
    "portal": "bench.portal_pages",
    "auctions": "bench.auctions",
    "orders": "bench.orders",
    "saga-floor": "bench.saga_floor",
    "db-floor": "bench.db_floor",
    "support-ingestion": "bench.support_ingestion",
}
