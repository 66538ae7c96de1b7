"""The demo: upload a day of orders, refunds and logistics costs to Klar, then wait for Klar to confirm.

``make demo`` writes a few thousand generated records into a folder, points the ``klar_default``
connection at the local sandbox and runs this DAG with ``airflow dags test klar_demo``. The DAG itself
knows nothing of the sandbox: pointed at ``https://open-api.getklar.com`` with a real token it uploads to
Klar. The folder comes from the ``data_dir`` param (default: the ``KLAR_DEMO_DATA_DIR`` environment
variable) and holds::

    orders/*.jsonl           one or more JSON Lines exports of orders
    refunds.jsonl            refunds

The logistics costs come from the shop's database instead, with a query: the connection
``klar_demo_shop`` (``make demo`` points it at a SQLite file in the same folder; point it at your own
database, PostgreSQL, MySQL, Snowflake..., to use yours) holds the table
``logistics_costs(order_id, total_logistics_costs)``, one row per order.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import Param, dag

from airflow_provider_klar.operators.klar import KlarUploadOperator
from airflow_provider_klar.sensors.klar import KlarStatusSensor


@dag(
    dag_id="klar_demo",
    schedule=None,  # run by `make demo`; "@daily" for your real exports
    start_date=datetime(2025, 1, 1),
    tags=["klar", "example"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "data_dir": Param(
            os.environ.get("KLAR_DEMO_DATA_DIR", "/tmp/klar-demo"),
            type="string",
            description="Folder (or object storage URL) holding the day's exports.",
        ),
    },
)
def klar_demo() -> None:
    # A few broken orders must not stop the day's upload: tolerate up to 1 % and keep them for review.
    upload_orders = KlarUploadOperator(
        task_id="upload_orders",
        resource="orders",
        path="{{ params.data_dir }}/orders/*.jsonl",
        max_rejected=0.01,
        rejected_path="{{ params.data_dir }}/rejected/orders.jsonl",
    )
    upload_refunds = KlarUploadOperator(
        task_id="upload_refunds",
        resource="refunds",
        path="{{ params.data_dir }}/refunds.jsonl",
    )
    # Rows of a query: each column a field, named as Klar names it; ORDER BY lets a retry resume.
    upload_logistics_costs = KlarUploadOperator(
        task_id="upload_logistics_costs",
        resource="logistics-costs",
        sql="""
            SELECT order_id AS "orderId", total_logistics_costs AS "totalLogisticsCosts"
            FROM logistics_costs
            ORDER BY order_id
        """,
        sql_conn_id="klar_demo_shop",
    )
    # Done once Klar reports a successful orders submission made after this upload started; fails at
    # once if the latest submission failed. Deferrable: the wait holds no worker slot.
    wait_for_orders = KlarStatusSensor(
        task_id="wait_for_orders",
        resource="orders",
        since="{{ ti.xcom_pull(task_ids='upload_orders')['started_at'] }}",
        deferrable=True,
        poke_interval=5,
        timeout=timedelta(minutes=30).total_seconds(),
    )

    # Refunds and costs refer to orders, so they follow the orders.
    upload_orders >> [upload_refunds, upload_logistics_costs, wait_for_orders]


klar_demo()
