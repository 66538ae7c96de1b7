"""Orders from an upstream task: the task returns a list of order dicts, the operator uploads them.

Replace ``extract_orders`` with your own query (a warehouse, a shop database, an ERP). The list travels
through XCom, so keep it to a daily delta (thousands, not millions): for large volumes write a file and
pass ``path=`` instead (see ``klar_orders_jsonl_glob``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, task

from airflow_provider_klar.operators.klar import KlarUploadOperator


@dag(
    dag_id="klar_orders_from_task",
    schedule=None,  # manual runs only: the stand-in data is fake; "@daily" for your real export
    start_date=datetime(2025, 1, 1),
    tags=["klar", "example"],
)
def klar_orders_from_task() -> None:
    @task
    def extract_orders() -> list[dict[str, Any]]:
        """Return the day's orders as Klar order dicts (camelCase keys)."""
        # Stand-in for your query: realistic generated orders with consistent totals.
        from airflow_provider_klar.sandbox.fake_data import fake_orders

        return list(fake_orders(50, seed=1))

    KlarUploadOperator(
        task_id="upload_orders",
        resource="orders",
        records=extract_orders(),
    )


klar_orders_from_task()
