"""Every example DAG imports cleanly, with the expected ids, and does no I/O at parse time."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_compat import dag_bag

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
EXPECTED = {
    "klar_demo",
    "klar_mapped_files",
    "klar_orders_from_sql",
    "klar_orders_from_task",
    "klar_orders_jsonl_glob",
    "klar_refunds_and_costs",
    "klar_upload_and_wait",
    "klar_validate_dry_run",
}


@pytest.fixture(scope="module")
def dagbag() -> Any:
    return dag_bag(dag_folder=str(EXAMPLE_DAGS), safe_mode=False)


def test_example_dags_import_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


def test_every_example_dag_is_tagged_and_has_tasks(dagbag: Any) -> None:
    for dag_id in EXPECTED:
        dag = dagbag.dags.get(dag_id)
        assert dag is not None, dag_id
        assert "klar" in dag.tags, dag_id
        assert dag.task_ids, dag_id


def test_example_dags_import_through_common_compat() -> None:
    """The examples are meant to be copied on either Airflow line: compat imports, fake data only in tasks."""
    for path in sorted(EXAMPLE_DAGS.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        top_level = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
        modules = {node.module for node in top_level}
        assert "airflow.providers.common.compat.sdk" in modules, path.name
        assert not any(m and m.startswith(("airflow.decorators", "airflow.models")) for m in modules), (
            path.name
        )
        # Generating sample data is run-time work: never imported at module level (parse time).
        assert not any(m and "fake_data" in m for m in modules), path.name
        assert "airflow_provider_klar.sandbox" not in modules, path.name


def test_upload_tasks_resolve_to_known_resources(dagbag: Any) -> None:
    from airflow_provider_klar.operators.klar import KlarUploadOperator
    from airflow_provider_klar.resources import RESOURCES

    resources = set()
    for dag_id in EXPECTED:
        for task in dagbag.dags.get(dag_id).tasks:
            if isinstance(task, KlarUploadOperator):
                resources.add(task.resource)
    assert resources <= set(RESOURCES)
    # Together the examples cover every Klar resource.
    assert resources == set(RESOURCES)
