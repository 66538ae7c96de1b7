"""A fan-out: one mapped upload task per export file (dynamic task mapping).

``list_exports`` returns the files to load; ``KlarUploadOperator.partial(...).expand(path=...)`` creates
one task instance per file at run time. Each file is retried, resumed and reported on its own, and the
operator's default ``map_index_template`` names each instance after its file in the UI. Use it when a
day's export is many large files, or a backfill is one file per day.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import Param, dag, task

from airflow_provider_klar.operators.klar import KlarUploadOperator

EXPORT_DIR = os.environ.get("KLAR_EXAMPLE_EXPORT_DIR", "/tmp/klar-example/mapped")


@dag(
    dag_id="klar_mapped_files",
    schedule=None,  # manual runs only: the stand-in data is fake; "@daily" for your real export
    start_date=datetime(2025, 1, 1),
    tags=["klar", "example"],
    params={"export_dir": Param(EXPORT_DIR, type="string", description="Folder or object storage URL.")},
)
def klar_mapped_files() -> None:
    @task
    def list_exports(export_dir: str) -> list[str]:
        """Return the export files to upload (writing sample ones first, as a stand-in for your export)."""
        import json

        from airflow.providers.common.compat.sdk import ObjectStoragePath

        from airflow_provider_klar.sandbox.fake_data import fake_orders

        folder = ObjectStoragePath(export_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for day in range(4):
            with (folder / f"orders-day-{day}.jsonl").open("w") as out:
                for order in fake_orders(25, seed=day, start=day * 25):
                    out.write(json.dumps(order) + "\n")
        return sorted(str(path) for path in folder.glob("orders-day-*.jsonl"))

    KlarUploadOperator.partial(
        task_id="upload_file",
        resource="orders",
    ).expand(path=list_exports(export_dir="{{ params.export_dir }}"))


klar_mapped_files()
