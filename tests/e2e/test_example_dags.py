"""Every example DAG runs green under ``dag.test()`` against the sandbox, and stores what it should.

Real parts only: a real Airflow (SQLite, from the ``airflow_db`` fixture), the DAG files as users copy
them, and real HTTP over loopback to the sandbox (``klar_sandbox``, which sets
``AIRFLOW_CONN_KLAR_DEFAULT`` for the test). Each DAG writes its data under the test's ``tmp_path``
through its params.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.airflow_compat import dag_bag

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

    from airflow_provider_klar.sandbox import SandboxServer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def dagbag() -> Any:
    bag = dag_bag(str(EXAMPLE_DAGS), safe_mode=False)
    assert bag.import_errors == {}
    return bag


def run(dagbag: Any, dag_id: str, conf: dict[str, Any] | None = None) -> DagRun:
    """Run one DAG with ``dag.test()``; return its DagRun."""
    dag = dagbag.dags.get(dag_id)
    assert dag is not None, dag_id
    return dag.test(run_conf=conf or {})


def states(dag_run: DagRun) -> dict[str, str]:
    """Return ``task_id[map_index]`` -> state for every task instance of the run."""
    return {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state)
        for ti in dag_run.get_task_instances()
    }


def xcom(dag_run: DagRun, task_id: str) -> Any:
    """Return the ``return_value`` XCom of one (unmapped) task of the run."""
    ti = dag_run.get_task_instance(task_id)
    assert ti is not None, task_id
    value = ti.xcom_pull(task_ids=task_id)
    return json.loads(value) if isinstance(value, str) else value


def assert_green(dag_run: DagRun) -> None:
    assert dag_run.state == "success", states(dag_run)
    assert set(states(dag_run).values()) == {"success"}, states(dag_run)


def test_orders_from_task(dagbag: Any, klar_sandbox: SandboxServer, airflow_db: Path) -> None:
    dag_run = run(dagbag, "klar_orders_from_task")

    assert_green(dag_run)
    assert klar_sandbox.count("orders") == 50
    summary = xcom(dag_run, "upload_orders")
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (50, 50, 0)
    assert summary["mode"] == "upload"


def test_orders_jsonl_glob(
    dagbag: Any, klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path
) -> None:
    export_dir = f"file://{tmp_path}/exports"
    dag_run = run(dagbag, "klar_orders_jsonl_glob", {"export_dir": export_dir})

    assert_green(dag_run)
    assert sorted(p.name for p in (tmp_path / "exports").glob("orders-*.jsonl")) == [
        "orders-000.jsonl",
        "orders-001.jsonl",
        "orders-002.jsonl",
    ]
    assert klar_sandbox.count("orders") == 120
    assert xcom(dag_run, "upload_orders")["accepted"] == 120


def test_refunds_and_costs(
    dagbag: Any, klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path
) -> None:
    dag_run = run(dagbag, "klar_refunds_and_costs", {"data_dir": str(tmp_path)})

    assert_green(dag_run)
    expected = {"refunds": 30, "cogs": 60, "logistics-costs": 60, "transaction-costs": 60}
    for resource, count in expected.items():
        task_id = f"upload_{resource.replace('-', '_')}"
        assert xcom(dag_run, task_id)["accepted"] == count, resource
    assert {resource: klar_sandbox.count(resource) for resource in expected} == expected
    assert klar_sandbox.count("orders") == 0
    # The CSV reader kept ids as strings and parsed amounts as numbers.
    cogs = klar_sandbox.get("cogs", "ORD-0")
    assert cogs is not None
    assert isinstance(cogs["productCogs"], float)
    assert isinstance(cogs["lineItemId"], str)


def test_validate_dry_run_stores_nothing(
    dagbag: Any, klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path
) -> None:
    dag_run = run(dagbag, "klar_validate_dry_run", {"data_dir": str(tmp_path)})

    assert_green(dag_run)
    summary = xcom(dag_run, "validate_orders")
    assert summary["mode"] == "validate"
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (22, 20, 2)
    assert sorted(summary["rejected_ids"]) == ["ORD-3", "ORD-9"]
    assert klar_sandbox.count("orders") == 0
    request_paths = {entry["path"] for entry in klar_sandbox.requests()}
    assert request_paths
    assert all(path.endswith("/orders/validate") for path in request_paths)
    rejected = [json.loads(line) for line in (tmp_path / "rejected-orders.jsonl").read_text().splitlines()]
    assert sorted(entry["id"] for entry in rejected) == ["ORD-3", "ORD-9"]
    error_paths = {entry["id"]: entry["errors"][0]["path"] for entry in rejected}
    assert error_paths == {"ORD-3": "createdAt", "ORD-9": "lineItems.0.taxes.0.taxRate"}


def test_mapped_files(dagbag: Any, klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path) -> None:
    dag_run = run(dagbag, "klar_mapped_files", {"export_dir": str(tmp_path)})

    assert_green(dag_run)
    mapped = [ti for ti in dag_run.get_task_instances() if ti.task_id == "upload_file"]
    assert sorted(ti.map_index for ti in mapped) == [0, 1, 2, 3]
    # The operator's default map_index_template names each instance after its file.
    assert sorted(ti.rendered_map_index for ti in mapped) == [f"orders-day-{day}.jsonl" for day in range(4)]
    assert klar_sandbox.count("orders") == 100


def test_upload_and_wait(dagbag: Any, klar_sandbox: SandboxServer, airflow_db: Path) -> None:
    dag_run = run(dagbag, "klar_upload_and_wait")

    assert_green(dag_run)
    assert klar_sandbox.count("orders") == 30
    status = xcom(dag_run, "wait_for_klar")
    assert status["resource"] == "orders"
    assert status["total"] >= 30
    started = datetime.fromisoformat(xcom(dag_run, "upload_orders")["started_at"])
    assert datetime.fromisoformat(status["last_success"]) >= started


def test_demo_dag(
    dagbag: Any,
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo DAG, on a small version of the data ``make demo`` generates (same generator)."""
    spec = importlib.util.spec_from_file_location("klar_demo_script", REPO / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    counts = demo.generate_data(tmp_path, 300)
    monkeypatch.setenv(*demo.shop_connection(tmp_path))

    dag_run = run(dagbag, "klar_demo", {"data_dir": str(tmp_path)})

    assert_green(dag_run)
    orders = xcom(dag_run, "upload_orders")
    assert (orders["records"], orders["accepted"], orders["rejected"]) == (300, 298, 2)
    assert klar_sandbox.count("orders") == 298
    assert klar_sandbox.count("refunds") == counts["refunds"]
    assert klar_sandbox.count("logistics-costs") == counts["logistics-costs"]
    assert len((tmp_path / "rejected" / "orders.jsonl").read_text().splitlines()) == 2
    assert xcom(dag_run, "wait_for_orders")["last_success"] is not None
