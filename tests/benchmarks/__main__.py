"""Run the benchmarks: ``python -m tests.benchmarks [NAME ...]``.

Imports every ``tests/benchmarks/bench_*.py`` module in name order and calls its ``main()``. Names
given on the command line (``bench_validation`` or just ``validation``) select a subset.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def _wanted(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if not names:
        return found
    chosen = []
    for name in names:
        stem = name.removesuffix(".py")
        stem = stem if stem.startswith("bench_") else f"bench_{stem}"
        if stem not in found:
            raise SystemExit(f"No benchmark {name!r}; available: {', '.join(found) or 'none'}.")
        chosen.append(stem)
    return chosen


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmark modules one after another and print their figures."""
    for stem in _wanted(list(sys.argv[1:] if argv is None else argv)):
        module = importlib.import_module(f"{__package__ or 'tests.benchmarks'}.{stem}")
        print(f"== {stem} ==", flush=True)
        started = time.perf_counter()
        module.main()
        print(f"({stem} took {time.perf_counter() - started:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
