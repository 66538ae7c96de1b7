"""Upload, then wait for Klar to confirm: a deferrable ``KlarStatusSensor`` after a ``KlarUploadOperator``.

The sensor succeeds once Klar's status for ``orders`` shows a successful submission at or after
``since`` (here: when the upload started, read from its XCom summary) and at least ``min_total``
orders in total. It fails at once when the latest submission after ``since`` failed. With
``deferrable=True`` the waiting happens in the triggerer and holds no worker slot.

Downstream DAGs can also be scheduled on the ``klar://orders`` asset the upload emits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import dag, task

from airflow_provider_klar.operators.klar import KlarUploadOperator
from airflow_provider_klar.sensors.klar import KlarStatusSensor


@dag(
    dag_id="klar_upload_and_wait",
    schedule=None,  # manual runs only: the stand-in data is fake; "@daily" for your real export
    start_date=datetime(2025, 1, 1),
    tags=["klar", "example"],
)
def klar_upload_and_wait() -> None:
    @task
    def extract_orders() -> list[dict[str, Any]]:
        """Stand-in for your query."""
        from airflow_provider_klar.sandbox.fake_data import fake_orders

        return list(fake_orders(30, seed=3))

    upload = KlarUploadOperator(task_id="upload_orders", resource="orders", records=extract_orders())
    confirmed = KlarStatusSensor(
        task_id="wait_for_klar",
        resource="orders",
        since="{{ ti.xcom_pull(task_ids='upload_orders')['started_at'] }}",
        min_total=30,
        deferrable=True,
        poke_interval=10,
        timeout=timedelta(hours=1).total_seconds(),
    )
    upload >> confirmed


klar_upload_and_wait()
