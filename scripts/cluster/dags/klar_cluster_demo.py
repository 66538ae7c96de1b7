"""The DAG of ``make cluster-demo``: one upload mapped over the order files, run by two Celery workers.

``KLAR_CLUSTER_DATA`` names the folder of the JSON Lines files (the demo writes them before the run).
Every mapped instance takes a slot of the ``klar`` pool, so at most as many instances as the pool has
slots (2 in the demo) send requests to Klar at once, however many workers there are.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_klar.operators.klar import KlarUploadOperator

DATA = Path(os.environ.get("KLAR_CLUSTER_DATA", "/nonexistent"))
#: The demo writes exactly this many files; the DAG lists them by name so parsing never reads the disk.
FILES = int(os.environ.get("KLAR_CLUSTER_FILES", "12"))

with DAG(
    "klar_cluster_demo",
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["klar", "cluster-demo"],
):
    KlarUploadOperator.partial(
        task_id="upload_orders",
        resource="orders",
        batch_size=100,
        max_concurrency=2,
        pool="klar",
        retries=1,
        retry_delay=timedelta(seconds=2),
    ).expand(path=[str(DATA / f"orders-{i:02d}.jsonl") for i in range(FILES)])
