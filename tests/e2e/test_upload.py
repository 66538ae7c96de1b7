"""KlarUploadOperator in real DAGs (``dag.test()`` on SQLite) over real loopback HTTP.

Most tests run against the project's sandbox (``klar_sandbox``); the resume tests use the scripted Klar
of ``_dags.py`` instead, whose failures the test scripts per request and whose log keeps the id of every
record received, so "nothing confirmed is sent again" can be checked exactly.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_klar.sandbox.fake_data import fake_orders, fake_refunds
from tests.airflow_compat import asset_event_count
from tests.e2e import _dags
from tests.e2e._dags import (
    ScriptedKlar,
    link_of,
    run_dag,
    run_upload,
    stored_text,
    summary_of,
    task_instances,
    write_jsonl,
)

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# The scripted Klar of the resume tests, as a fixture of this module.
scripted_klar = _dags.scripted_klar


# -- sandbox tests ------------------------------------------------------------------------------------


def test_records_from_an_upstream_task_through_xcom(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow.providers.common.compat.sdk import task

    from airflow_provider_klar.operators.klar import KlarUploadOperator

    def build() -> None:
        @task
        def extract() -> list[dict[str, Any]]:
            orders = list(fake_orders(250))
            orders[17]["lineItems"][0]["taxes"][0]["taxRate"] = "19%"
            return orders

        KlarUploadOperator(
            task_id="upload", records=extract(), batch_size=100, max_rejected=1, checkpoint=None
        )

    dag_run = run_dag("klar_e2e_xcom", build, store_dag)

    assert dag_run.state == "success"
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert summary["records"] == 250
    assert (summary["accepted"], summary["rejected"], summary["batches"]) == (249, 1, 3)
    assert summary["rejected_ids"] == ["ORD-17"]
    assert klar_sandbox.count("orders") == 249
    assert klar_sandbox.get("orders", "ORD-17") is None
    assert sorted(r["records"] for r in klar_sandbox.requests()) == [49, 100, 100]
    # The connection points at the local sandbox: the link opens the sandbox's stored orders.
    link = link_of(task_instances(dag_run, "upload")[0], dag_run)
    assert link == f"{klar_sandbox.url}/_sandbox/records/orders"
    out = capfd.readouterr().out
    assert "Batch 3:" in out
    assert "Uploaded 250 orders records" in out
    assert klar_sandbox.token not in out + stored_text("klar_e2e_xcom")


def test_a_json_lines_file_with_invalid_records_and_a_malformed_line_under_faults(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    orders: list[Any] = list(fake_orders(300))
    orders[5]["createdAt"] = 1_704_067_200_000 * 1000  # far beyond any timestamp: invalid locally
    orders[40]["lineItems"][0]["taxes"][0]["taxRate"] = "19%"
    orders[41] = {"id": 41, "createdAt": 1_704_067_200}  # a numeric id
    orders[250] = '{"id": "ORD-250", "createdAt": '  # a malformed line
    source = write_jsonl(tmp_path / "orders.jsonl", orders)
    rejected = tmp_path / "rejected" / "orders.jsonl"
    klar_sandbox.set_faults(fail_next=[429, 503, "drop", 503], retry_after=0)

    dag_run = run_upload(
        "klar_e2e_jsonl",
        store_dag,
        path=str(source),
        batch_size=50,
        max_concurrency=3,
        max_rejected=0.05,
        rejected_path=str(rejected),
    )

    assert dag_run.state == "success"
    summary = summary_of(task_instances(dag_run, "upload")[0])
    bad = {5, 40, 41, 250}
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (300, 296, 4)
    assert summary["rejected_locally"] == 4
    assert sorted(summary["rejected_ids"]) == ["41", "ORD-250", "ORD-40", "ORD-5"]
    stored = {r["id"] for r in klar_sandbox.records("orders")}
    assert stored == {f"ORD-{i}" for i in range(300) if i not in bad}
    assert summary["accepted"] == klar_sandbox.count("orders")
    faults = [r["fault"] for r in klar_sandbox.requests() if r["fault"]]
    assert len(faults) == 4  # every injected fault was met, and retried

    lines = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert sorted(line["position"] for line in lines) == sorted(bad)
    by_position = {line["position"]: line for line in lines}
    assert by_position[40]["id"] == "ORD-40"
    assert by_position[40]["errors"][0]["path"] == "lineItems.0.taxes.0.taxRate"
    assert by_position[41]["id"] == "41"
    assert by_position[250]["line"] == 251
    assert by_position[250]["id"] == "ORD-250"  # read from the cut line
    assert by_position[250]["where"] == f"line 251 of {source}"
    assert {line["rejected_by"] for line in lines} == {"local"}
    assert "invalid JSON" in by_position[250]["errors"][0]["message"]
    assert by_position[250]["record"].startswith('{"id": "ORD-250"')
    assert summary["rejected_path"] == str(rejected)

    out = capfd.readouterr().out
    assert "line 41 of" in out  # the first errors name the line of each rejected record
    assert klar_sandbox.token not in out + stored_text("klar_e2e_jsonl") + rejected.read_text()


def test_klar_rejections_in_207_and_400_answers_and_resending_what_was_not_stored(
    store_dag: Callable[[Any], None], klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path
) -> None:
    from airflow_provider_klar.operators.klar import KlarUploadOperator

    orders = list(fake_orders(60))
    orders[3]["lineItems"][0]["taxes"][0]["taxRate"] = "19%"
    refunds = list(fake_refunds(40))
    refunds[7]["createdAt"] = "yesterday"
    refunds_file = write_jsonl(tmp_path / "refunds.jsonl.gz.tmp", refunds)
    with refunds_file.open("rb") as raw, gzip.open(tmp_path / "refunds.jsonl.gz", "wb") as packed:
        packed.write(raw.read())

    def build() -> None:
        # Without local validation the invalid records reach Klar: orders answer 207, refunds 400.
        KlarUploadOperator(
            task_id="orders", records=orders, validate_locally=False, batch_size=25, max_rejected=1
        )
        KlarUploadOperator(
            task_id="refunds",
            resource="refunds",
            path=str(tmp_path / "refunds.jsonl.gz"),
            validate_locally=False,
            batch_size=20,
            max_rejected=1,
            rejected_path=str(tmp_path / "rejected-refunds.jsonl"),
        )

    dag_run = run_dag("klar_e2e_klar_rejects", build, store_dag)

    assert dag_run.state == "success"
    orders_summary = summary_of(task_instances(dag_run, "orders")[0])
    assert (orders_summary["accepted"], orders_summary["rejected_by_klar"]) == (59, 1)
    assert orders_summary["rejected_ids"] == ["ORD-3"]
    assert orders_summary["resent_not_stored"] == 0
    assert klar_sandbox.count("orders") == 59

    refunds_summary = summary_of(task_instances(dag_run, "refunds")[0])
    assert (refunds_summary["accepted"], refunds_summary["rejected_by_klar"]) == (39, 1)
    assert refunds_summary["resent_not_stored"] == 19
    assert klar_sandbox.count("refunds") == 39
    refund_requests = [r for r in klar_sandbox.requests() if "/refunds/" in r["path"]]
    assert sorted((r["records"], r["status"]) for r in refund_requests) == [(19, 201), (20, 201), (20, 400)]
    rejected = [json.loads(line) for line in (tmp_path / "rejected-refunds.jsonl").read_text().splitlines()]
    assert [(r["id"], r["line"], r["rejected_by"]) for r in rejected] == [(refunds[7]["id"], 8, "klar")]
    assert rejected[0]["record"]["createdAt"] == "yesterday"


def test_mapped_over_files_each_named_after_its_file_with_an_asset_event(
    store_dag: Callable[[Any], None], klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path
) -> None:
    from airflow_provider_klar.operators.klar import KlarUploadOperator

    files = [
        str(write_jsonl(tmp_path / f"orders-{day}.jsonl", list(fake_orders(20, start=day * 20))))
        for day in range(3)
    ]

    def build() -> None:
        KlarUploadOperator.partial(task_id="upload", resource="orders", batch_size=8).expand(path=files)

    dag_run = run_dag("klar_e2e_mapped", build, store_dag)

    assert dag_run.state == "success"
    tis = task_instances(dag_run, "upload")
    assert [ti.rendered_map_index for ti in tis] == ["orders-0.jsonl", "orders-1.jsonl", "orders-2.jsonl"]
    assert [summary_of(ti)["accepted"] for ti in tis] == [20, 20, 20]
    assert klar_sandbox.count("orders") == 60
    assert asset_event_count("klar://orders", dag_run.run_id) == 3


def test_too_many_rejections_fail_the_task_after_every_valid_record_was_sent(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    orders = list(fake_orders(30))
    for i in (2, 11):
        orders[i]["cancelledAt"] = 0

    dag_run = run_upload("klar_e2e_max_rejected", store_dag, records=orders, batch_size=10, max_rejected=1)

    assert dag_run.state == "failed"
    assert klar_sandbox.count("orders") == 28
    out = capfd.readouterr().out
    assert "KlarRejectedRecordsError" in out
    assert "2 of 30 orders records were rejected; max_rejected=1 allows 1 record" in out
    assert "record 2 (id ORD-2): cancelledAt" in out
    assert "record 11 (id ORD-11): cancelledAt" in out


# -- resume: an independent loopback server that fails on cue ----------------------------------------


@pytest.mark.parametrize("checkpoint", ["variable", "folder"])
def test_a_retried_try_resumes_without_sending_confirmed_batches_again(
    store_dag: Callable[[Any], None],
    scripted_klar: ScriptedKlar,
    airflow_db: Path,
    tmp_path: Path,
    checkpoint: str,
) -> None:
    orders: list[Any] = list(fake_orders(230))
    orders[3]["cancelledAt"] = 0  # rejected locally in the first try
    orders[150]["cancelledAt"] = 0  # rejected locally in the second try
    source = write_jsonl(tmp_path / "orders.jsonl", orders)
    rejected = tmp_path / "rejected.jsonl"
    # The first try gets 401 on its 4th request (auth errors are not retried inside the hook).
    scripted_klar.fail = lambda n: 401 if n == 4 else None

    dag_id = f"klar_e2e_resume_{checkpoint}"
    dag_run = run_upload(
        dag_id,
        store_dag,
        path=str(source),
        batch_size=25,
        max_concurrency=1,
        max_rejected=2,
        rejected_path=str(rejected),
        checkpoint="variable" if checkpoint == "variable" else str(tmp_path / "checkpoints"),
        retries=1,
        retry_delay=timedelta(0),
    )

    assert dag_run.state == "success"
    ti = task_instances(dag_run, "upload")[0]
    assert ti.try_number == 2
    # Try 1: batches 1-3 confirmed (positions 0..75, one rejected), batch 4 refused; try 2: the rest.
    assert scripted_klar.answers == [201, 201, 201, 401, *[201] * 7]
    first_try = [i for batch in scripted_klar.received[:3] for i in batch]
    second_try = [i for batch in scripted_klar.received[3:] for i in batch]
    assert not set(first_try) & set(second_try)
    assert second_try[0] == "ORD-76"
    assert sorted(first_try + second_try) == sorted(f"ORD-{i}" for i in range(230) if i not in (3, 150))

    summary = summary_of(ti)
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (230, 228, 2)
    assert summary["resumed_records"] == 76
    assert summary["skipped_batches"] == 3
    assert sorted(summary["rejected_ids"]) == ["ORD-150", "ORD-3"]
    # The rejected file holds both tries' rejections: the first try's was carried over.
    assert sorted(json.loads(line)["id"] for line in rejected.read_text().splitlines()) == [
        "ORD-150",
        "ORD-3",
    ]
    # The checkpoint is gone once the task succeeded.
    if checkpoint == "folder":
        assert list((tmp_path / "checkpoints").glob("*.json")) == []
    else:
        from airflow.models.variable import Variable

        from airflow_provider_klar.upload.checkpoint import checkpoint_key

        key = checkpoint_key(dag_id, dag_run.run_id, "upload", -1)
        assert Variable.get(key, default_var=None) is None
    assert scripted_klar.TOKEN not in stored_text(dag_id)
