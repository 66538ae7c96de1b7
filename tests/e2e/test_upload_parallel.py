"""``validation_workers=2`` in a real DAG (``dag.test()``) against the sandbox: the same as one process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_klar.sandbox.fake_data import fake_orders
from airflow_provider_klar.upload.parallel import start_method, workers_available
from tests.e2e._dags import run_dag, summary_of, task_instances
from tests.unit.test_fast_path import mixed_lines
from tests.unit.test_parallel import no_children

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not workers_available(), reason="no way to start worker processes"),
]

#: Differ between two runs of the same upload whatever the workers.
_TIMES = ("started_at", "finished_at", "duration_s", "rejected_path")


def test_two_validation_workers_upload_exactly_what_one_process_does(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow_provider_klar.operators.klar import KlarUploadOperator

    lines = [json.dumps(order).encode() for order in fake_orders(1200, start=100)]
    mixed = mixed_lines("07.2025")
    for at in (0, 333, 700, 1199):  # every kind of line, spread over several chunks
        lines[at:at] = mixed
    source = tmp_path / "orders.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")

    def build() -> None:
        for workers in (1, 2):
            KlarUploadOperator(
                task_id=f"upload_{workers}",
                path=str(source),
                batch_size=100,
                max_concurrency=1,  # batches answered in order: even the first-errors lists must match
                validation_workers=workers,
                max_rejected=10_000,
                rejected_path=str(tmp_path / f"rejected-{workers}.jsonl"),
                checkpoint=None,
            )

    dag_run = run_dag("klar_e2e_parallel", build, store_dag)

    assert dag_run.state == "success"
    one, two = (summary_of(task_instances(dag_run, f"upload_{w}")[0]) for w in (1, 2))
    for key in _TIMES:
        one.pop(key), two.pop(key)
    assert two == one
    assert one["records"] == sum(1 for line in source.read_bytes().splitlines() if line.strip())
    assert one["rejected"] > 4 * 8
    assert one["accepted"] > 1200
    assert one["warnings"]
    rejected_one = (tmp_path / "rejected-1.jsonl").read_text().splitlines()
    rejected_two = (tmp_path / "rejected-2.jsonl").read_text().splitlines()
    assert rejected_two == rejected_one
    assert len(rejected_one) == one["rejected"]
    positions = [json.loads(line)["position"] for line in rejected_one]
    assert positions == sorted(positions)
    # Both tasks sent the same records, in the same batches.
    batches = [(r["records"], r["status"]) for r in klar_sandbox.requests() if r["path"].endswith("/json")]
    assert len(batches) >= 2 * 12
    assert batches[: len(batches) // 2] == batches[len(batches) // 2 :]
    stored = {r["id"] for r in klar_sandbox.records("orders")}
    assert stored >= {f"ORD-{i}" for i in range(100, 1300)}
    assert no_children()
    out = capfd.readouterr().out
    assert out.count(f"Checking the records in 2 worker processes (started by {start_method()}).") == 1
    assert klar_sandbox.token not in out
