"""The provider under a real Airflow: scheduler, LocalExecutor workers, api-server, dag-processor, triggerer.

Every other suite runs DAGs in-process with ``dag.test()``. Here the scheduler queues the tasks, the
LocalExecutor runs each in its own task process (supervised, talking to the api-server), retries come
from the scheduler, mapped instances are expanded by it, and the deferrable sensor waits in the
triggerer. The tests kill and terminate real task processes and read what arrived from the sandbox's
request log. Every wait polls the REST API (or the sandbox) against a deadline; none sleeps.

The metadata database is SQLite: Airflow 3.3 runs the LocalExecutor on it without complaint (tasks
reach the database only through the api-server), which keeps the suite free of a database server.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import pytest

from airflow_provider_klar.sandbox.fake_data import fake_orders
from tests.airflow_stack import AirflowStack
from tests.scheduler.conftest import write_jsonl

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox.server import SandboxServer

# Airflow 3's components (api-server, dag-processor, task SDK) and its task state store.
pytestmark = [pytest.mark.e2e, pytest.mark.scheduler, pytest.mark.airflow3_only, pytest.mark.timeout(600)]

#: Orders in the long uploads; ``KLAR_SUITE_ORDERS=100000 KLAR_SUITE_BATCH=1000`` measures the issue's case.
ORDERS = int(os.environ.get("KLAR_SUITE_ORDERS", "10000"))
BATCH = int(os.environ.get("KLAR_SUITE_BATCH", "250"))
#: max_concurrency of the suite's uploads (see dags/klar_scheduler_suite.py).
CONCURRENCY = 4


def _running_task(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, Any]:
    ti = stack.task_instance(dag_id, run_id, "upload")
    assert ti["state"] == "running", ti
    assert ti["pid"], ti
    return ti


def _task_process(pid: int) -> psutil.Process:
    """The task process of a running try: a descendant of the scheduler, running the task runner."""
    process = psutil.Process(pid)
    assert process.is_running()
    return process


def _summary(stack: AirflowStack, dag_id: str, run_id: str, map_index: int = -1) -> dict[str, Any]:
    entry = stack.rest(
        "GET",
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/upload/xcomEntries/return_value",
        params={"map_index": map_index, "deserialize": True, "stringify": False},
    )
    value = entry["value"]
    assert isinstance(value, dict), entry
    return value


def _arrived(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))


def test_a_killed_task_process_is_retried_resumes_and_resends_at_most_the_batches_in_flight(
    airflow_stack: AirflowStack, klar: SandboxServer, suite_data: Path
) -> None:
    write_jsonl(suite_data / "kill" / "orders.jsonl", fake_orders(ORDERS))
    # Answers take a while, so the kill lands with batches in flight, as on a busy Klar.
    klar.set_faults(latency_ms=100)
    run_id = airflow_stack.trigger("klar_suite_kill")

    airflow_stack.wait_until(
        lambda: klar.count("orders") >= 0.4 * ORDERS, 300, "40% of the orders to arrive", interval=0.02
    )
    ti = _running_task(airflow_stack, "klar_suite_kill", run_id)
    assert ti["try_number"] == 1
    _task_process(ti["pid"]).kill()  # SIGKILL: no handler, no last checkpoint save, no goodbye
    stored_at_kill = klar.count("orders")

    assert airflow_stack.wait_for_run("klar_suite_kill", run_id) == "success"

    ti = airflow_stack.task_instance("klar_suite_kill", run_id, "upload")
    assert ti["try_number"] == 2
    assert klar.count("orders") == ORDERS  # every record arrived
    sent = [r for r in klar.requests() if r["path"].endswith("/orders/json")]
    assert all(r["status"] in {200, 201} for r in sent), {r["status"] for r in sent}
    received = sum(r["records"] for r in sent)
    resent = received - ORDERS
    summary = _summary(airflow_stack, "klar_suite_kill", run_id)
    print(
        f"\nkilled at {stored_at_kill:,} of {ORDERS:,} stored; {len(sent)} requests, "
        f"{received:,} records received, {resent:,} sent twice ({resent / BATCH:.1f} batches of {BATCH}); "
        f"the retry resumed after {summary['resumed_records']:,} records"
    )
    # Only what was in flight when the process died is sent again (max_concurrency, plus one batch of
    # margin for a batch answered between the last checkpoint save and the kill).
    assert resent <= (CONCURRENCY + 1) * BATCH
    assert summary["records"] == ORDERS
    assert summary["resumed_records"] >= stored_at_kill - (CONCURRENCY + 1) * BATCH
    log = airflow_stack.task_log("klar_suite_kill", run_id, "upload", 2)
    assert "Progress is checkpointed in the task state store" in log
    assert "Resuming: earlier tries finished" in log
    # The checkpoint is removed once the upload is done.
    state = airflow_stack.rest(
        "GET", f"/dags/klar_suite_kill/dagRuns/{run_id}/taskInstances/upload/state-store"
    )
    assert state["total_entries"] == 0, state


def test_a_terminated_task_sends_nothing_more(
    airflow_stack: AirflowStack, klar: SandboxServer, suite_data: Path
) -> None:
    write_jsonl(suite_data / "term" / "orders.jsonl", fake_orders(ORDERS, start=500_000))
    klar.set_faults(latency_ms=100)
    run_id = airflow_stack.trigger("klar_suite_term")

    airflow_stack.wait_until(
        lambda: klar.count("orders") >= 2 * BATCH, 300, "the upload to be under way", interval=0.02
    )
    process = _task_process(_running_task(airflow_stack, "klar_suite_term", run_id)["pid"])
    terminated_at = datetime.now(timezone.utc)
    process.send_signal(signal.SIGTERM)

    assert airflow_stack.wait_for_run("klar_suite_term", run_id) == "failed"
    ti = airflow_stack.task_instance("klar_suite_term", run_id, "upload")
    assert ti["state"] == "failed"
    reported_at = datetime.now(timezone.utc)
    airflow_stack.wait_until(lambda: not process.is_running(), 60, "the task process to exit")

    sent = klar.requests()
    late = [r for r in sent if _arrived(r) > terminated_at]
    print(
        f"\nSIGTERM after {klar.count('orders'):,} of {ORDERS:,} stored; task failed "
        f"{(reported_at - terminated_at).total_seconds():.1f} s later; {len(late)} requests arrived after it"
    )
    # A request can only start before the task saw the signal: at most those already handed to senders.
    assert len(late) <= CONCURRENCY
    assert not [r for r in sent if _arrived(r) > reported_at]
    assert klar.count("orders") < ORDERS
    log = airflow_stack.task_log("klar_suite_term", run_id, "upload", 1)
    # The task fails with the stop, whatever the requests cut short by it raised (they are chained).
    assert "KlarUploadStoppedError" in log, log[-3000:]
    assert "The upload was stopped" in log, log[-3000:]


def test_an_upload_mapped_over_files_labels_each_instance_with_its_file(
    airflow_stack: AirflowStack, klar: SandboxServer, suite_data: Path
) -> None:
    sizes = {"north.jsonl": 150, "south.jsonl": 250, "west.jsonl": 90}
    start = 0
    for name, size in sizes.items():
        write_jsonl(suite_data / "mapped" / name, fake_orders(size, start=start))
        start += size
    run_id = airflow_stack.trigger("klar_suite_mapped")

    assert airflow_stack.wait_for_run("klar_suite_mapped", run_id) == "success"

    tis = sorted(airflow_stack.task_instances("klar_suite_mapped", run_id), key=lambda t: t["map_index"])
    assert [(t["map_index"], t["rendered_map_index"], t["state"]) for t in tis] == [
        (0, "north.jsonl", "success"),
        (1, "south.jsonl", "success"),
        (2, "west.jsonl", "success"),
    ]
    for ti, size in zip(tis, sizes.values(), strict=True):
        assert _summary(airflow_stack, "klar_suite_mapped", run_id, ti["map_index"])["accepted"] == size
    assert klar.count("orders") == sum(sizes.values())


def test_the_deferrable_sensor_waits_in_the_real_triggerer(
    airflow_stack: AirflowStack, klar: SandboxServer
) -> None:
    run_id = airflow_stack.trigger("klar_suite_sensor")

    deferred = airflow_stack.wait_until(
        lambda: (
            (ti := airflow_stack.task_instance("klar_suite_sensor", run_id, "wait_for_orders"))["state"]
            == "deferred"
            and ti
        ),
        180,
        "the sensor to defer",
    )
    # Deferred: no worker holds it; the triggerer polls Klar's status for it.
    assert deferred["trigger"]["classpath"] == "airflow_provider_klar.triggers.klar.KlarStatusTrigger"
    # The deferring try's workload must be reported finished before the trigger fires: otherwise
    # Airflow 3.3's scheduler takes the late "success" of that workload for the resumed try and fails
    # it ("finished with state success, but the task instance's state attribute is running").
    event = (
        "Received executor event with state success for task instance TaskInstanceKey("
        f"dag_id='klar_suite_sensor', task_id='wait_for_orders', run_id='{run_id}'"
    )
    airflow_stack.wait_until(
        lambda: event in airflow_stack.log_text("scheduler"), 120, "the deferring workload to be reported"
    )
    polls = len(klar.requests(include_get=True))
    airflow_stack.wait_until(
        lambda: any(r["method"] == "GET" for r in klar.requests(include_get=True)[polls:]),
        120,
        "the triggerer to read Klar's status",
    )
    assert airflow_stack.run_state("klar_suite_sensor", run_id) == "running"

    answer = httpx.post(
        f"{klar.url}/07.2025/orders/json",
        json=list(fake_orders(3, start=900_000)),
        headers={"Authorization": f"Bearer {klar.token}"},
    )
    assert answer.status_code == 201, answer.text

    assert airflow_stack.wait_for_run("klar_suite_sensor", run_id) == "success"
    ti = airflow_stack.task_instance("klar_suite_sensor", run_id, "wait_for_orders")
    assert ti["state"] == "success"
