"""DAG of the real-scheduler suite's validation-worker test (``tests/scheduler/test_scheduler_workers.py``).

``KLAR_SUITE_DATA`` names the folder of the data files.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_klar.operators.klar import KlarUploadOperator

DATA = os.environ.get("KLAR_SUITE_DATA", "/nonexistent")

with DAG(
    "klar_suite_workers", schedule=None, start_date=datetime(2025, 1, 1, tzinfo=timezone.utc), catchup=False
):
    # Two validation workers inside a task process of the task runner (which has threads).
    KlarUploadOperator(
        task_id="upload",
        path=f"{DATA}/workers/orders.jsonl",
        batch_size=500,
        validation_workers=2,
        max_rejected=100,
        retries=0,
    )
