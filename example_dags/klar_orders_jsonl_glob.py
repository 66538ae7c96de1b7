"""A JSON Lines export in object storage, read with a glob: every matching file, streamed, in a stable order.

``export_dir`` is an object storage URL. The default is a local ``file://`` folder so the DAG runs
anywhere; in production point it at your bucket, naming the Airflow connection that holds its
credentials, e.g. ``s3://aws_default@my-bucket/exports`` (install ``apache-airflow-providers-amazon``)
or ``gs://google_cloud_default@my-bucket/exports``. Compressed exports (``*.jsonl.gz``) work the same.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import Param, dag, task

from airflow_provider_klar.operators.klar import KlarUploadOperator

EXPORT_DIR = os.environ.get("KLAR_EXAMPLE_EXPORT_DIR", "file:///tmp/klar-example/exports")


@dag(
    dag_id="klar_orders_jsonl_glob",
    schedule=None,  # manual runs only: the stand-in data is fake; "@daily" for your real export
    start_date=datetime(2025, 1, 1),
    tags=["klar", "example"],
    params={"export_dir": Param(EXPORT_DIR, type="string", description="Object storage URL of the exports.")},
)
def klar_orders_jsonl_glob() -> None:
    @task
    def write_sample_export(export_dir: str) -> None:
        """Stand-in for your nightly export job: three JSON Lines files of orders. Delete it in production."""
        import json

        from airflow.providers.common.compat.sdk import ObjectStoragePath

        from airflow_provider_klar.sandbox.fake_data import fake_orders

        folder = ObjectStoragePath(export_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for part in range(3):
            with (folder / f"orders-{part:03d}.jsonl").open("w") as out:
                for order in fake_orders(40, seed=part, start=part * 40):
                    out.write(json.dumps(order) + "\n")

    upload = KlarUploadOperator(
        task_id="upload_orders",
        resource="orders",
        path="{{ params.export_dir }}/orders-*.jsonl",
        rejected_path="{{ params.export_dir }}/rejected/orders.jsonl",
    )

    write_sample_export(export_dir="{{ params.export_dir }}") >> upload


klar_orders_jsonl_glob()
