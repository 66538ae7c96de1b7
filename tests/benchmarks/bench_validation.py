"""Local validation speed on realistic orders, against bare ``Order.model_validate`` in the same run.

Prints records per second and the ratio to the baseline; asserts nothing about timing.
``RecordValidator.validate`` should cost about as much as bare validation: it adds a walk over the
nested objects (for unknown fields) and returns the caller's dict instead of dumping the model.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from airflow_provider_klar.models import Order, RecordValidator
from airflow_provider_klar.sandbox.fake_data import fake_orders

#: Orders per timed pass and passes per variant (the best pass counts: least disturbed by neighbours).
N = int(os.environ.get("KLAR_BENCH_RECORDS", "2000"))
REPEAT = int(os.environ.get("KLAR_BENCH_REPEAT", "5"))


def _best_rate(func: Callable[[Any], Any], records: Sequence[Any]) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        for record in records:
            func(record)
        best = min(best, time.perf_counter() - started)
    return len(records) / best


def main() -> None:
    """Measure and print the table."""
    orders = list(fake_orders(N, seed=1))
    sizes = [len(json.dumps(o).encode()) for o in orders]
    lenient = RecordValidator("orders", "07.2025")
    strict = RecordValidator("orders", "07.2025", strict=True)
    snake = [Order.model_validate(o).model_dump(by_alias=False, exclude_unset=True) for o in orders]
    invalid = sum(not strict.validate(o).valid for o in orders)
    if invalid:
        raise SystemExit(f"{invalid} fake orders do not validate: the benchmark would measure error paths.")

    def bare(o: Any) -> Any:
        return Order.model_validate(o)

    def validate_dump(o: Any) -> Any:
        return Order.model_validate(o).model_dump(mode="json", by_alias=True, exclude_unset=True)

    variants: list[tuple[str, Callable[[Any], Any], Sequence[Any]]] = [
        ("(a) Order.model_validate (baseline)", bare, orders),
        ("(b) RecordValidator.validate", lenient.validate, orders),
        ("(c) RecordValidator.validate, strict pitfalls", strict.validate, orders),
        ("(d) model_validate + model_dump (naive)", validate_dump, orders),
        ("(e) RecordValidator.validate, snake_case input", lenient.validate, snake),
    ]
    print(
        f"{N} fake orders, {statistics.mean(sizes) / 1024:.2f} KiB mean JSON size "
        f"(min {min(sizes)} B, max {max(sizes)} B), best of {REPEAT} passes"
    )
    print(f"{'variant':<50} {'records/s':>11} {'us/record':>10} {'vs (a)':>7}")
    baseline = 0.0
    for name, func, records in variants:
        rate = _best_rate(func, records)
        baseline = baseline or rate
        print(f"{name:<50} {rate:>11,.0f} {1e6 / rate:>10.1f} {baseline / rate:>6.2f}x")


if __name__ == "__main__":
    main()
