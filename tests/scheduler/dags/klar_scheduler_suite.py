"""DAGs of the real-scheduler suite (``tests/scheduler``); the suite writes their files first.

``KLAR_SUITE_DATA`` names the folder of the data files; ``KLAR_SUITE_BATCH`` the batch size of the
long uploads (the suite's default is small enough to kill a run midway within seconds).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_klar.operators.klar import KlarUploadOperator
from airflow_provider_klar.sensors.klar import KlarStatusSensor

DATA = os.environ.get("KLAR_SUITE_DATA", "/nonexistent")
BATCH = int(os.environ.get("KLAR_SUITE_BATCH", "250"))
START = datetime(2025, 1, 1, tzinfo=timezone.utc)

with DAG("klar_suite_kill", schedule=None, start_date=START, catchup=False):
    # Retried once after a killed try; the retry resumes from the checkpoint of the first.
    KlarUploadOperator(
        task_id="upload",
        path=f"{DATA}/kill/orders.jsonl",
        batch_size=BATCH,
        max_concurrency=4,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )

with DAG("klar_suite_term", schedule=None, start_date=START, catchup=False):
    KlarUploadOperator(
        task_id="upload",
        path=f"{DATA}/term/orders.jsonl",
        batch_size=BATCH,
        max_concurrency=4,
        retries=0,
    )

with DAG("klar_suite_mapped", schedule=None, start_date=START, catchup=False):
    KlarUploadOperator.partial(task_id="upload", resource="orders", batch_size=100).expand(
        path=[f"{DATA}/mapped/{name}" for name in ("north.jsonl", "south.jsonl", "west.jsonl")]
    )

with DAG("klar_suite_sensor", schedule=None, start_date=START, catchup=False):
    KlarStatusSensor(
        task_id="wait_for_orders",
        resource="orders",
        min_total=3,
        deferrable=True,
        poke_interval=1,
        timeout=300,
    )
