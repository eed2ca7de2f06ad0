"""``python -m bench [NAME ...] [OPTIONS]`` (``make bench ARGS="..."``): run benchmarks.

Names come first (see ``bench/registry.py``; none: every one, in order); whatever
follows is handed to each benchmark (``python -m bench gateway --seconds 5``).
``--list`` names them; ``--no-record`` leaves ``docs/benchmarks.md`` alone.
"""

from __future__ import annotations

import sys
import traceback

from bench.harness import command_line, run_benchmark
from bench.registry import BENCHMARKS


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip() if __doc__ else "")
        print("\nbenchmarks: " + ", ".join(BENCHMARKS))
        print("options of one: python -m bench NAME --help")
        return 0
    if "--list" in argv:
        print("\n".join(BENCHMARKS))
        return 0
    record = "--no-record" not in argv
    rest = [arg for arg in argv if arg != "--no-record"]
    names: list[str] = []
    while rest and not rest[0].startswith("-"):
        names.append(rest.pop(0))
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    command = command_line(argv)
    failed = []
    for name in names or list(BENCHMARKS):
        try:
            run_benchmark(name, rest, command=command, record=record)
        except Exception:  # one broken benchmark must not cost the others their run
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
