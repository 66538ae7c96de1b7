"""Refunds and the three cost resources, each from the file format that suits it.

- ``refunds``: JSON Lines (nested objects),
- ``cogs``: CSV (``orderId,lineItemId,sku,productCogs``; numbers are parsed as numbers, ids stay strings),
- ``logistics-costs``: a JSON array,
- ``transaction-costs``: gzip-compressed CSV.

The four uploads are independent, so they run in parallel. The files come from ``data_dir`` (a local
folder or an object storage URL; default: the ``KLAR_EXAMPLE_DATA_DIR`` environment variable).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import Param, dag, task

from airflow_provider_klar.operators.klar import KlarUploadOperator

DATA_DIR = os.environ.get("KLAR_EXAMPLE_DATA_DIR", "/tmp/klar-example/costs")


@dag(
    dag_id="klar_refunds_and_costs",
    schedule=None,  # manual runs only: the stand-in data is fake; "@daily" for your real export
    start_date=datetime(2025, 1, 1),
    tags=["klar", "example"],
    params={"data_dir": Param(DATA_DIR, type="string", description="Folder holding the exports.")},
)
def klar_refunds_and_costs() -> None:
    @task
    def write_sample_files(data_dir: str) -> None:
        """Stand-in for the exports of your ERP and payment provider. Delete it in production."""
        import csv
        import gzip
        import json
        from pathlib import Path

        from airflow_provider_klar.sandbox import fake_data

        folder = Path(data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "refunds.jsonl").open("w") as out:
            out.writelines(json.dumps(refund) + "\n" for refund in fake_data.fake_refunds(30))
        (folder / "logistics-costs.json").write_text(json.dumps(list(fake_data.fake_logistics_costs(60))))
        for name, rows, opener in (
            ("cogs.csv", list(fake_data.fake_cogs(60)), open),
            ("transaction-costs.csv.gz", list(fake_data.fake_transaction_costs(60)), gzip.open),
        ):
            columns = list(dict.fromkeys(key for row in rows for key in row))
            with opener(folder / name, "wt", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)

    sample_files = write_sample_files(data_dir="{{ params.data_dir }}")
    for resource, file_name in (
        ("refunds", "refunds.jsonl"),
        ("cogs", "cogs.csv"),
        ("logistics-costs", "logistics-costs.json"),
        ("transaction-costs", "transaction-costs.csv.gz"),
    ):
        sample_files >> KlarUploadOperator(
            task_id=f"upload_{resource.replace('-', '_')}",
            resource=resource,
            path=f"{{{{ params.data_dir }}}}/{file_name}",
        )


klar_refunds_and_costs()
