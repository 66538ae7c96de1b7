"""Run one DAG of uploads with ``dag.test()`` in a fresh process, for the OpenLineage test.

A fresh process because Airflow's OpenLineage provider decides once per process, when its plugin is
loaded, whether it is enabled (``[openlineage] transport``): the test sets the transport in this
process's environment. Run as ``python -m tests.e2e._lineage_run <config.json>``; the configuration
names the files, databases and connections the test prepared. Prints the DAG run's state on a line
starting with ``RESULT``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def build(config: dict[str, Any]) -> Any:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_klar.operators.klar import KlarUploadOperator

    with DAG(config["dag_id"], schedule=None, start_date=datetime(2025, 1, 1, tzinfo=timezone.utc)) as dag:
        KlarUploadOperator(task_id="from_files", path=config["files"], checkpoint=None)
        KlarUploadOperator(
            task_id="from_sqlite",
            resource="transaction-costs",
            sql='SELECT order_id AS "orderId", amount AS "transactionCosts" FROM payments ORDER BY order_id',
            sql_conn_id="shop_sqlite",
            checkpoint=None,
        )
        if config.get("postgres"):
            KlarUploadOperator(
                task_id="from_postgres",
                resource="logistics-costs",
                sql='SELECT order_id AS "orderId", cost AS "totalLogisticsCosts" FROM shipments ORDER BY 1',
                sql_conn_id="shop_postgres",
                checkpoint=None,
            )
        KlarUploadOperator(task_id="too_many_rejections", records=config["bad_records"], checkpoint=None)
    return dag


def store(dag: Any) -> None:
    from tests.airflow_compat import AIRFLOW_3

    if not AIRFLOW_3:
        dag.sync_to_db()
        return
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=tempfile.mkdtemp(prefix="klar-no-dags-"))
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def main(path: str) -> None:
    config = json.loads(Path(path).read_text())
    dag = build(config)
    store(dag)
    dag_run = dag.test()
    print("RESULT " + json.dumps({"state": str(getattr(dag_run.state, "value", dag_run.state))}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
