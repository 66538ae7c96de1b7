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
from airflow_provider_klar.models.pitfalls import check_order
from airflow_provider_klar.sandbox.fake_data import fake_orders

#: Orders per timed pass and passes per variant (the best pass counts: least disturbed by neighbours).
N = int(os.environ.get("KLAR_BENCH_RECORDS", "2000"))
REPEAT = int(os.environ.get("KLAR_BENCH_REPEAT", "5"))


Variant = tuple[str, Callable[[Any], Any], Sequence[Any]]


def _best_rates(variants: Sequence[Variant]) -> list[float]:
    """Time one pass of each variant per round, round after round, and keep each variant's best.

    Interleaving the variants spreads the noise of a shared machine over all of them alike.
    """
    best = [float("inf")] * len(variants)
    for _ in range(REPEAT):
        for i, (_, func, records) in enumerate(variants):
            started = time.perf_counter()
            for record in records:
                func(record)
            best[i] = min(best[i], time.perf_counter() - started)
    return [len(records) / seconds for (_, _, records), seconds in zip(variants, best, strict=True)]


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

    variants: list[Variant] = [
        ("(a) Order.model_validate (baseline)", bare, orders),
        ("(b) RecordValidator.validate", lenient.validate, orders),
        ("(c) RecordValidator.validate, strict pitfalls", strict.validate, orders),
        ("(d) model_validate + model_dump (naive)", validate_dump, orders),
        ("(e) RecordValidator.validate, snake_case input", lenient.validate, snake),
        ("(f) pitfall checks alone (check_order)", check_order, orders),
    ]
    print(
        f"{N} fake orders, {statistics.mean(sizes) / 1024:.2f} KiB mean JSON size "
        f"(min {min(sizes)} B, max {max(sizes)} B), best of {REPEAT} passes"
    )
    print(f"{'variant':<50} {'records/s':>11} {'us/record':>10} {'time vs (a)':>12}")
    rates = _best_rates(variants)
    for (name, _, _), rate in zip(variants, rates, strict=True):
        print(f"{name:<50} {rate:>11,.0f} {1e6 / rate:>10.1f} {rates[0] / rate:>11.2f}x")


if __name__ == "__main__":
    main()
