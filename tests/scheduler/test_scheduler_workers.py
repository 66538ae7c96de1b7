"""Validation workers inside a real task process (LocalExecutor, the task runner's supervisor and threads).

``dag.test()`` runs a task in the test's own process; here the scheduler's LocalExecutor starts a task
process under the task runner, as in production, and the workers must start there without a fork of
it (the forkserver), do their work, and leave nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from airflow_provider_klar.sandbox.fake_data import fake_orders
from airflow_provider_klar.upload.parallel import start_method

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox.server import SandboxServer
    from tests.airflow_stack import AirflowStack

pytestmark = [pytest.mark.e2e, pytest.mark.scheduler, pytest.mark.airflow3_only, pytest.mark.timeout(600)]


def test_validation_workers_start_and_finish_inside_a_real_task_process(
    airflow_stack: AirflowStack, klar: SandboxServer, suite_data: Path
) -> None:
    orders = list(fake_orders(3000, start=700_000))
    lines = [json.dumps(order) for order in orders]
    lines[1234] = '{"id": "ORD-BROKEN", "createdAt": '  # one malformed line, rejected as itself
    (suite_data / "workers").mkdir(parents=True, exist_ok=True)
    (suite_data / "workers" / "orders.jsonl").write_text("\n".join(lines) + "\n")
    run_id = airflow_stack.trigger("klar_suite_workers")

    assert airflow_stack.wait_for_run("klar_suite_workers", run_id) == "success"

    assert klar.count("orders") == 2999
    log = airflow_stack.task_log("klar_suite_workers", run_id, "upload", 1)
    # The workers ran (no fallback to the task's process), started without forking the task process.
    assert f"Checking the records in 2 worker processes (started by {start_method()})." in log
    assert "validating in the task's process" not in log
    entry = airflow_stack.rest(
        "GET",
        f"/dags/klar_suite_workers/dagRuns/{run_id}/taskInstances/upload/xcomEntries/return_value",
        params={"deserialize": True, "stringify": False},
    )
    summary = entry["value"]
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (3000, 2999, 1)
