"""A dry run: check a day's orders against Klar's ``/validate`` endpoint without storing anything.

Useful before a first backfill or after changing the export: every record is validated locally by the
provider's models, then by Klar itself, and the rejected ones are written to ``rejected_path`` with
their index, id, field path and message. ``max_rejected=0.5`` lets the task succeed unless more than
half the records are invalid, so the report is the result; the default (0) fails on any rejection.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import Param, dag, task

from airflow_provider_klar.operators.klar import KlarUploadOperator

DATA_DIR = os.environ.get("KLAR_EXAMPLE_DATA_DIR", "/tmp/klar-example/validate")


@dag(
    dag_id="klar_validate_dry_run",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    tags=["klar", "example"],
    params={"data_dir": Param(DATA_DIR, type="string", description="Where the rejected records go.")},
)
def klar_validate_dry_run() -> None:
    @task
    def extract_orders() -> list[dict[str, Any]]:
        """Stand-in for your export: 20 good orders and two classic mistakes."""
        from airflow_provider_klar.sandbox.fake_data import fake_orders

        orders = list(fake_orders(22, seed=7))
        orders[3]["createdAt"] *= 1000  # milliseconds instead of seconds
        orders[9]["lineItems"][0]["taxes"][0]["taxRate"] = 19  # a percentage instead of 0.19
        return orders

    @task
    def report(summary: dict[str, Any]) -> None:
        """Print what a real upload would do."""
        print(
            f"{summary['accepted']} of {summary['records']} orders are valid; rejected: {summary['rejected_ids']}"
        )

    validate = KlarUploadOperator(
        task_id="validate_orders",
        resource="orders",
        mode="validate",
        records=extract_orders(),
        max_rejected=0.5,
        rejected_path="{{ params.data_dir }}/rejected-orders.jsonl",
    )
    report(validate.output)


klar_validate_dry_run()
