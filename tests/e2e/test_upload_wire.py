"""KlarUploadOperator in real DAGs against a hostile Klar: fault storms, either envelope, 413, token echoes.

The storm runs against the small stand-in of ``_wire_klar.py`` (faults by request number, so the
storm is the same on every run); the others against the project's sandbox and its switches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e._dags import run_upload, stored_text, summary_of, task_instances, write_jsonl
from tests.e2e._wire_klar import TOKEN, Storm, WireKlar, running

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def transaction_costs(n: int) -> list[dict[str, Any]]:
    return [{"orderId": f"T-{i}", "transactionCosts": round(0.3 + i % 97 / 10, 2)} for i in range(n)]


def test_a_fault_storm_is_ridden_out_in_one_try(
    store_dag: Callable[[Any], None],
    airflow_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """429 + Retry-After: 1 every 3rd request, 503 every 5th, a dropped connection every 7th."""
    records = 30_000
    source = write_jsonl(tmp_path / "costs.jsonl", transaction_costs(records))
    storm = Storm(slow_down_every=3, retry_after="1", unavailable_every=5, drop_every=7)
    with running(WireKlar(storm=storm)) as klar:
        monkeypatch.setenv("AIRFLOW_CONN_KLAR_DEFAULT", klar.connection())

        dag_run = run_upload(
            "klar_e2e_storm",
            store_dag,
            resource="transaction-costs",
            path=str(source),
            max_concurrency=4,
            checkpoint=None,
            retries=2,
            # A quick backoff keeps the test short; the budgets are the defaults.
            max_retry_wait=2.0,
        )
    out = capfd.readouterr().out
    ti = task_instances(dag_run, "upload")[0]
    assert dag_run.state == "success", out[-3000:]
    assert ti.try_number == 1  # one try: no Airflow retry was needed
    summary = summary_of(ti)
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (records, records, 0)
    assert len(klar.stored) == records
    statuses = [s.status for s in klar.posts()]
    assert statuses.count(429) >= 10
    assert statuses.count(503) >= 5
    assert statuses.count(-1) >= 3
    # The limiter went down (and said so), and the server never saw more than max_concurrency at once.
    assert "at most 2 requests in flight from now on (was 4)" in out
    assert klar.most_in_flight <= 4
    assert TOKEN not in out + stored_text("klar_e2e_storm")


@pytest.mark.parametrize("envelope", ["items", "array"])
def test_cost_uploads_arrive_whichever_envelope_klar_wants(
    *,
    envelope: str,
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    klar_sandbox.set_faults(envelope=envelope, latency_jitter_ms=30)
    rows = [{"orderId": f"O-{i}", "sku": f"S-{i}", "productCogs": 2.5} for i in range(1200)]
    source = write_jsonl(tmp_path / "cogs.jsonl", rows)

    dag_run = run_upload(
        f"klar_e2e_envelope_{envelope}",
        store_dag,
        resource="cogs",
        path=str(source),
        batch_size=200,
        checkpoint=None,
    )
    out = capfd.readouterr().out
    assert dag_run.state == "success", out[-3000:]
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["accepted"], summary["rejected"]) == (1200, 0)
    assert klar_sandbox.count("cogs") == 1200
    warned = "accepted a bare JSON array" in out
    assert warned is (envelope == "array")
    refused = [r for r in klar_sandbox.requests() if r["status"] == 400]
    # Only the first wave of batches (at most max_concurrency) can meet the refusal.
    assert len(refused) <= (4 if envelope == "array" else 0)


def test_a_413_splits_batches_and_rejects_only_the_record_too_large_alone(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    klar_sandbox.set_faults(max_body_bytes=20_000)
    rows: list[dict[str, Any]] = transaction_costs(2000)
    rows[1234]["note"] = "x" * 30_000  # alone over Klar's limit (an unknown field: sent as it is)
    source = write_jsonl(tmp_path / "big.jsonl", rows)
    rejected = tmp_path / "rejected.jsonl"

    dag_run = run_upload(
        "klar_e2e_413",
        store_dag,
        resource="transaction-costs",
        path=str(source),
        batch_size=1000,
        max_concurrency=2,
        max_rejected=1,
        rejected_path=str(rejected),
        checkpoint=None,
    )
    out = capfd.readouterr().out
    assert dag_run.state == "success", out[-3000:]
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["accepted"], summary["rejected"], summary["rejected_ids"]) == (1999, 1, ["T-1234"])
    assert klar_sandbox.count("transaction-costs") == 1999
    (line,) = rejected.read_text().splitlines()
    assert "Klar refused this record alone as too large (HTTP 413" in json.dumps(json.loads(line))
    assert "as too large (HTTP 413): the batch is sent in halves" in out


@pytest.mark.klar_sandbox(echo_auth=True)
def test_a_klar_that_echoes_the_token_never_gets_it_into_the_task_s_outputs(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    rows: list[dict[str, Any]] = transaction_costs(300)
    for index in (5, 150, 299):
        rows[index]["transactionCosts"] = "12,50"  # Klar refuses it, echoing the Authorization header
    source = write_jsonl(tmp_path / "costs.jsonl", rows)
    rejected = tmp_path / "rejected.jsonl"

    dag_run = run_upload(
        "klar_e2e_echo",
        store_dag,
        resource="transaction-costs",
        path=str(source),
        batch_size=100,
        validate_locally=False,
        max_rejected=3,
        rejected_path=str(rejected),
        checkpoint=None,
    )
    out = capfd.readouterr()
    assert dag_run.state == "success", out.out[-3000:]
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["accepted"], summary["rejected"]) == (297, 3)
    lines = rejected.read_text()
    assert len(lines.splitlines()) == 3
    assert "***" in lines  # the echo arrived, scrubbed
    token = klar_sandbox.token
    assert token not in lines
    assert token not in out.out + out.err
    assert token not in stored_text("klar_e2e_echo")
