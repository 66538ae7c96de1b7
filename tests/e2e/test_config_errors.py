"""Which failures Airflow retries: configuration errors fail at once, missing input is retried.

Real tasks in real DAG runs (``dag.test()`` on SQLite) with ``retries`` set: a configuration error (an
unknown resource or version a template rendered, records rendering to nothing, a connection without a
token) ends the task on its first try; a missing input file is tried again, since an export may land
after the run started.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_klar.exceptions import KlarConfigurationError
from airflow_provider_klar.operators.klar import KlarUploadOperator
from tests.e2e._dags import run_upload

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RETRIES = {"retries": 2, "retry_delay": timedelta(0)}


def _run(dag_id: str, store_dag: Callable[[Any], None], **arguments: Any) -> Any:
    """Run a one-task DAG (``upload``) with ``arguments``; return its task instance after the run."""
    dag_run = run_upload(dag_id, store_dag, checkpoint=None, **RETRIES, **arguments)
    (ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "upload"]
    return ti


@pytest.mark.parametrize(
    ("case", "arguments"),
    [
        ("resource", {"resource": "{{ 'order' }}", "records": [{"id": "ORD-1"}]}),
        ("version", {"api_version": "{{ '2025-07' }}", "records": [{"id": "ORD-1"}]}),
        ("records", {"records": "{{ None }}"}),
    ],
)
def test_a_configuration_error_fails_on_the_first_try(
    store_dag: Callable[[Any], None], klar_sandbox: SandboxServer, case: str, arguments: dict[str, Any]
) -> None:
    ti = _run(f"klar_e2e_config_{case}", store_dag, **arguments)
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert klar_sandbox.requests() == []


def test_a_connection_without_token_fails_on_the_first_try(
    store_dag: Callable[[Any], None], monkeypatch: pytest.MonkeyPatch, klar_sandbox: SandboxServer
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KLAR_NO_TOKEN", f'{{"conn_type": "klar", "host": "{klar_sandbox.url}"}}')
    ti = _run("klar_e2e_config_token", store_dag, klar_conn_id="klar_no_token", records=[{"id": "ORD-1"}])
    assert (ti.state, ti.try_number) == ("failed", 1)


def test_missing_input_is_retried(store_dag: Callable[[Any], None], tmp_path: Path) -> None:
    ti = _run("klar_e2e_missing_input", store_dag, path=str(tmp_path / "exports" / "*.jsonl"))
    # Every try ran: 1 + retries.
    assert (ti.state, ti.try_number) == ("failed", 1 + RETRIES["retries"])


def test_wrong_sources_fail_when_the_dag_is_defined() -> None:
    # Both or neither source: the DAG file does not import, so no task is ever tried.
    from airflow.providers.common.compat.sdk import AirflowFailException

    for arguments in ({}, {"records": [], "path": "/data/*.jsonl"}):
        with pytest.raises(KlarConfigurationError, match="exactly one of records=") as caught:
            KlarUploadOperator(task_id="upload", **arguments)
        assert isinstance(caught.value, AirflowFailException)
