"""KlarUploadOperator's construction: argument checks, templated fields, outlets, mapping, extra link."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import Asset

from airflow_provider_klar.exceptions import KlarConfigurationError
from airflow_provider_klar.links.klar import KLAR_APP_URL, KlarLink
from airflow_provider_klar.operators.klar import DEFAULT_MAP_INDEX_TEMPLATE, KlarUploadOperator


def op(**kwargs: Any) -> KlarUploadOperator:
    kwargs.setdefault("task_id", "upload")
    if "records" not in kwargs and "path" not in kwargs:
        kwargs["records"] = [{"id": "ORD-1"}]
    return KlarUploadOperator(**kwargs)


def test_exactly_one_of_records_and_path() -> None:
    with pytest.raises(KlarConfigurationError, match=r"exactly one of records= .* got records and path"):
        op(records=[], path="/data/orders.jsonl")
    with pytest.raises(KlarConfigurationError, match="got none of them"):
        KlarUploadOperator(task_id="upload")


def test_construction_does_no_io() -> None:
    task = op(path="s3://no-such-bucket/orders/*.jsonl", klar_conn_id="no_such_connection")
    assert task.path == "s3://no-such-bucket/orders/*.jsonl"
    assert task.checkpoint == "auto"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 1001}, "batch_size must be an integer from 1 to 1000"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_concurrency": 0}, "max_concurrency must be from 1 to 32"),
        ({"max_rejected": 1.5}, "a float is a ratio"),
        ({"max_rejected": -1}, "must not be negative"),
        ({"max_batch_bytes": 10}, "max_batch_bytes"),
        ({"mode": "dry-run"}, "mode must be 'upload' or 'validate', got 'dry-run'"),
        ({"resource": "invoices"}, "Unknown Klar resource 'invoices'"),
        ({"resource": "transaction-costs", "mode": "validate"}, "no validate endpoint for transaction-costs"),
        ({"max_attempts": 0}, "max_attempts must be a whole number of at least 1; got 0"),
        ({"max_retry_wait": -2}, "max_retry_wait must be a number of seconds, not negative; got -2"),
        ({"max_retry_time": "10m"}, "max_retry_time must be a positive number of seconds; got '10m'"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(KlarConfigurationError, match=message):
        op(**kwargs)


def test_a_templated_resource_is_checked_when_the_task_runs_before_anything_is_sent() -> None:
    task = op(resource="{{ params.resource }}", mode="validate")
    task.resource = "transaction-costs"  # as rendered
    with pytest.raises(KlarConfigurationError, match="no validate endpoint for transaction-costs"):
        task.execute({})  # type: ignore[arg-type]


def test_templated_fields() -> None:
    assert set(KlarUploadOperator.template_fields) == {
        "records",
        "path",
        "sql",
        "resource",
        "api_version",
        "rejected_path",
    }


def test_the_resource_asset_is_the_default_outlet_of_uploads_only() -> None:
    assert op(resource="refunds").outlets == [Asset("klar://refunds")]
    assert op(mode="validate").outlets == []
    assert op(resource="{{ params.resource }}").outlets == []
    mine = Asset("s3://bucket/orders")
    assert op(outlets=[mine]).outlets == [mine]
    assert op(outlets=[]).outlets == []


def test_mapped_tasks_get_the_asset_and_a_map_index_template_naming_the_file() -> None:
    from airflow.providers.common.compat.sdk import DAG

    with DAG("mapped", schedule=None):
        mapped = KlarUploadOperator.partial(task_id="upload", resource="cogs").expand(
            path=["/data/a.csv", "/data/b.csv"]
        )
    assert mapped.outlets == [Asset("klar://cogs")]
    assert mapped.map_index_template == DEFAULT_MAP_INDEX_TEMPLATE
    with DAG("mapped_validate", schedule=None):
        checked = KlarUploadOperator.partial(task_id="check", mode="validate").expand(path=["/a.jsonl"])
    assert checked.outlets == []


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("s3://bucket/exports/2025-01-01/orders-003.jsonl.gz", "orders-003.jsonl.gz"),
        ("/data/exports/", "exports"),
        ("/data/exports/*.jsonl", "*.jsonl"),
    ],
)
def test_source_label_is_the_file_name(path: str, label: str) -> None:
    assert op(path=path).source_label == label
    assert op().source_label == ""


def test_the_map_index_template_renders_the_file_name_for_mapped_instances_only() -> None:
    import jinja2

    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(DEFAULT_MAP_INDEX_TEMPLATE)
    task = op(path="gs://b/orders-7.jsonl")

    class TI:
        def __init__(self, map_index: int) -> None:
            self.map_index = map_index

    assert template.render(task=task, ti=TI(2)) == "orders-7.jsonl"
    assert template.render(task=task, ti=TI(-1)) == ""


def test_the_klar_extra_link(monkeypatch: pytest.MonkeyPatch) -> None:
    # The connection is set here: other tests of the session may leave a sandbox's klar_default behind.
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT",
        '{"conn_type": "klar", "host": "https://open-api.getklar.com", "password": "t0ken"}',
    )
    links = KlarUploadOperator.operator_extra_links
    assert [type(link) for link in links] == [KlarLink]
    assert links[0].name == "Klar"
    assert links[0].get_link(op(), ti_key=None) == KLAR_APP_URL  # type: ignore[arg-type]


def test_on_kill_sets_the_stop_event_and_returns() -> None:
    task = op()
    task.on_kill()  # not running: nothing to stop
    task._stop = threading.Event()
    task.on_kill()
    assert task._stop.is_set()


def test_checkpoint_can_be_turned_off() -> None:
    assert op(checkpoint=None).checkpoint is None
    assert op(checkpoint=False).checkpoint is None
    assert op(checkpoint="s3://bucket/checkpoints").checkpoint == "s3://bucket/checkpoints"
