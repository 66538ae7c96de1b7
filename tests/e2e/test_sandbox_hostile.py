"""Uploads in real DAGs (``dag.test()``) against a sandbox switched to a hostile Klar.

The switches (``envelope``, ``max_body_bytes``, ``echo_auth``, ``latency_jitter_ms``) stand for what
Klar's help pages leave open or what a proxy in front of it does; each test checks what the task
reports and what the sandbox ends up holding, not only what the hook does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_klar.sandbox.fake_data import fake_orders, fake_records
from tests.e2e._dags import run_upload, stored_text, summary_of, task_instances, write_jsonl

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240), pytest.mark.usefixtures("airflow_db")]


@pytest.mark.parametrize("resource", ["cogs", "logistics-costs", "transaction-costs"])
def test_cost_uploads_arrive_when_klar_wants_a_bare_array(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    resource: str,
) -> None:
    klar_sandbox.set_faults(envelope={resource: "array"}, latency_jitter_ms=20)
    records: list[Any] = list(fake_records(resource, 230))
    records[7] = {**records[7], "orderId": 7}  # rejected locally: a numeric id
    rejected = tmp_path / "rejected.jsonl"
    source = write_jsonl(tmp_path / f"{resource}.jsonl", records)

    dag_run = run_upload(
        f"klar_e2e_array_{resource.replace('-', '_')}",
        store_dag,
        resource=resource,
        path=str(source),
        batch_size=50,
        max_rejected=1,
        rejected_path=str(rejected),
        checkpoint=None,
    )

    assert dag_run.state == "success"
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (230, 229, 1)
    stored_keys = {json.dumps(r, sort_keys=True) for r in klar_sandbox.records(resource)}
    sent = {json.dumps(r, sort_keys=True) for i, r in enumerate(records) if i != 7}
    assert stored_keys == sent
    # The locally rejected row reached the rejected file, with its line.
    (line,) = rejected.read_text().splitlines()
    assert json.loads(line)["record"]["orderId"] == 7
    # Klar refused the wrapped body once, as a whole; from then on the array went out, with a warning.
    # (Batches in flight before the first refusal was understood may each be refused once.)
    statuses = [r["status"] for r in klar_sandbox.requests()]
    assert 1 <= statuses.count(400) <= 4
    assert statuses.count(201) == 5
    out = capfd.readouterr().out
    assert out.count("pin it in the extra of connection") == 1


def test_a_body_size_limit_splits_batches_and_every_order_arrives(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    orders = list(fake_orders(300))
    largest = max(len(json.dumps(o, separators=(",", ":"))) for o in orders)
    # Room for about ten orders per request, while the task sends batches of 100.
    limit = 10 * largest
    klar_sandbox.set_faults(max_body_bytes=limit)
    source = write_jsonl(tmp_path / "orders.jsonl", orders)

    dag_run = run_upload(
        "klar_e2e_413",
        store_dag,
        path=str(source),
        batch_size=100,
        checkpoint=None,
    )

    assert dag_run.state == "success"
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["accepted"], summary["rejected"]) == (300, 0)
    assert klar_sandbox.count("orders") == 300
    for order in orders[::37]:
        assert klar_sandbox.get("orders", order["id"]) == order
    log = klar_sandbox.requests()
    statuses = [r["status"] for r in log]
    assert 413 in statuses, "the limit was never hit: the test proves nothing"
    assert set(statuses) == {201, 413}
    assert all(r["bytes"] <= limit for r in log if r["status"] == 201)
    assert all(r["bytes"] > limit for r in log if r["status"] == 413)
    assert "too large (HTTP 413)" in capfd.readouterr().out


def test_the_token_appears_nowhere_when_klar_echoes_it(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    klar_sandbox.set_faults(echo_auth=True, fail_next=[503, [429, 0]])
    orders: list[Any] = list(fake_orders(120))
    for at in (3, 50, 99):
        orders[at] = {**orders[at], "createdAt": "yesterday"}  # Klar refuses these
    source = write_jsonl(tmp_path / "orders.jsonl", orders)
    rejected = tmp_path / "rejected.jsonl"

    dag_run = run_upload(
        "klar_e2e_echo",
        store_dag,
        path=str(source),
        batch_size=40,
        validate_locally=False,  # so that Klar, echoing the header, is the one to refuse them
        max_rejected=3,
        rejected_path=str(rejected),
        checkpoint=None,
    )

    assert dag_run.state == "success"
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["accepted"], summary["rejected"]) == (117, 3)
    assert klar_sandbox.count("orders") == 117
    lines = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert {line["id"] for line in lines} == {orders[at]["id"] for at in (3, 50, 99)}
    # Klar's answers did carry the token: the check below is not vacuous.
    assert any(r["fault"] for r in klar_sandbox.requests())
    assert [r["status"] for r in klar_sandbox.requests()].count(207) == 3
    captured = capfd.readouterr()
    everything = captured.out + captured.err + stored_text("klar_e2e_echo") + rejected.read_text()
    assert "createdAt" in rejected.read_text()
    assert klar_sandbox.token not in everything
