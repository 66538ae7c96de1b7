"""KlarUploadOperator's sql=, sql_conn_id= and transform= arguments: checks at construction, templating."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_klar.exceptions import KlarConfigurationError
from airflow_provider_klar.operators.klar import KlarUploadOperator


def test_sql_is_one_of_the_three_sources() -> None:
    with pytest.raises(KlarConfigurationError, match="got path and sql"):
        KlarUploadOperator(task_id="t", path="/x.jsonl", sql="SELECT 1", sql_conn_id="db")
    with pytest.raises(KlarConfigurationError, match="got records and path and sql"):
        KlarUploadOperator(task_id="t", records=[], path="/x.jsonl", sql="SELECT 1", sql_conn_id="db")


def test_sql_needs_a_connection_and_a_connection_needs_sql() -> None:
    with pytest.raises(KlarConfigurationError, match=r"sql= needs sql_conn_id=.*postgres_default"):
        KlarUploadOperator(task_id="t", sql="SELECT 1")
    with pytest.raises(KlarConfigurationError, match="sql_conn_id= is only used with sql="):
        KlarUploadOperator(task_id="t", records=[], sql_conn_id="db")


def test_transform_must_be_callable() -> None:
    with pytest.raises(KlarConfigurationError, match=r"transform= must be a function .* got str"):
        KlarUploadOperator(task_id="t", records=[], transform="snake_to_camel")


def test_construction_runs_no_query() -> None:
    task = KlarUploadOperator(task_id="t", sql="SELECT doc FROM orders", sql_conn_id="no_such_db")
    assert task.sql == "SELECT doc FROM orders"
    assert "sql" in task.template_fields
    assert task.source_label == ""


def test_a_sql_file_is_read_and_rendered_and_names_the_source(tmp_path: Path) -> None:
    from airflow.providers.common.compat.sdk import DAG

    (tmp_path / "costs.sql").write_text("SELECT order_id, amount FROM costs WHERE day = '{{ params.day }}'")
    with DAG("klar_sql_file", schedule=None, template_searchpath=[str(tmp_path)], params={"day": "x"}) as dag:
        task = KlarUploadOperator(task_id="t", resource="logistics-costs", sql="costs.sql", sql_conn_id="db")
    context: Any = {"params": {"day": "2025-01-02"}}
    task.render_template_fields(context)
    assert task.sql == "SELECT order_id, amount FROM costs WHERE day = '2025-01-02'"
    assert task.source_label == "costs.sql"
    assert dag.task_dict["t"] is task
