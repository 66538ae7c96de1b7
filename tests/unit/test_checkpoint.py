"""Checkpoint stores: keys, files (local, object storage, atomic), Airflow Variables in and out of tasks."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pytest

from airflow_provider_klar.upload import (
    CheckpointStore,
    PathCheckpoint,
    VariableCheckpoint,
    checkpoint_key,
)
from airflow_provider_klar.upload.checkpoint import _in_task_sdk_runtime

STATE = {"format": 1, "confirmed": [[0, 41], [43, 43]], "accepted": 42_000, "rejected": 3}


def test_checkpoint_key_is_safe_and_distinct() -> None:
    run_id = "manual__2025-07-01T00:00:00.123456+00:00"
    key = checkpoint_key("shop/orders", run_id, "upload#1", 3)

    assert key.startswith(
        "klar_upload_checkpoint.shop_orders.upload_1.3.manual__2025-07-01T00_00_00.123456_00_00."
    )
    assert all(c.isalnum() or c in "._-" for c in key)
    assert key == checkpoint_key("shop/orders", run_id, "upload#1", 3)
    # Ids that only differ in the characters replaced, or in map index, still get their own key.
    assert key != checkpoint_key("shop_orders", run_id, "upload#1", 3)
    assert key != checkpoint_key("shop/orders", run_id, "upload#1", 4)
    assert checkpoint_key("d", "r", "t", None) == checkpoint_key("d", "r", "t", -1)
    assert len(checkpoint_key("d" * 250, "r" * 250, "t" * 250, 0)) <= 250


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_path_checkpoint_round_trip(kind: str, tmp_path: Path, memory_fs: fsspec.AbstractFileSystem) -> None:
    base = str(tmp_path / "checkpoints") if kind == "local" else "memory://bucket/checkpoints"
    store = PathCheckpoint(base, "k1")
    assert isinstance(store, CheckpointStore)

    assert store.load() is None
    store.save(STATE)
    assert store.load() == STATE
    store.save({**STATE, "accepted": 43_000})
    assert PathCheckpoint(base, "k1").load() == {**STATE, "accepted": 43_000}  # a new try, a new object
    assert PathCheckpoint(base, "k2").load() is None
    store.clear()
    assert store.load() is None
    store.clear()  # clearing twice is fine

    if kind == "local":
        assert store.location == str(tmp_path / "checkpoints" / "k1.json")
        assert os.listdir(tmp_path / "checkpoints") == []
    else:
        assert store.location == "memory://bucket/checkpoints/k1.json"
        assert not memory_fs.exists("/bucket/checkpoints/k1.json")


def test_a_failed_local_save_keeps_the_previous_checkpoint_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PathCheckpoint(tmp_path, "k")
    store.save(STATE)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.save({"format": 1, "confirmed": []})

    assert store.load() == STATE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]


def test_a_damaged_checkpoint_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "k.json").write_text("{not json")
    (tmp_path / "l.json").write_text("[1, 2]")

    assert PathCheckpoint(tmp_path, "k").load() is None
    assert PathCheckpoint(tmp_path, "l").load() is None
    assert "not valid JSON; starting from the beginning" in caplog.text
    assert "not a JSON object" in caplog.text


@pytest.mark.parametrize("bad", ["", "a/b", "a b", "x:y"])
def test_unsafe_keys_are_refused(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be non-empty and use only"):
        PathCheckpoint(tmp_path, bad)
    with pytest.raises(ValueError, match="must be non-empty and use only"):
        VariableCheckpoint(bad)


def test_variable_checkpoint_outside_a_task_uses_the_metadata_database(airflow_db: Path) -> None:
    from airflow.models.variable import Variable

    assert not _in_task_sdk_runtime()
    key = checkpoint_key("dag", f"outside-{time.time_ns()}", "upload", -1)
    store = VariableCheckpoint(key)

    assert store.load() is None
    store.save(STATE)
    assert json.loads(Variable.get(key)) == STATE
    assert VariableCheckpoint(key).load() == STATE
    store.clear()
    assert Variable.get(key, default_var=None) is None
    store.clear()


def _store_dag(dag_id: str) -> Any:
    from airflow.sdk import DAG, get_current_context, task

    with DAG(dag_id, schedule=None, catchup=False) as dag:

        @task
        def first_try() -> None:
            ti = get_current_context()["ti"]
            assert _in_task_sdk_runtime()  # so the task SDK's Variable API is what is exercised
            store = VariableCheckpoint(checkpoint_key(ti.dag_id, ti.run_id, "upload", ti.map_index))
            assert store.load() is None
            store.save({"format": 1, "confirmed": [[0, 4]]})
            assert store.load() == {"format": 1, "confirmed": [[0, 4]]}
            store.save(STATE)

        @task
        def second_try() -> None:
            # Another task process reads what the first one confirmed, then finishes and clears it.
            ti = get_current_context()["ti"]
            store = VariableCheckpoint(checkpoint_key(ti.dag_id, ti.run_id, "upload", -1))
            assert store.load() == STATE
            store.clear()
            assert store.load() is None
            store.save({"format": 1, "left": "for the test to read"})

        first_try() >> second_try()
    return dag


def test_variable_checkpoint_inside_a_running_task(store_dag: Callable[[Any], None]) -> None:
    dag = _store_dag(f"klar_checkpoint_{time.time_ns()}")
    store_dag(dag)

    run = dag.test()

    assert str(getattr(run.state, "value", run.state)) == "success"
    key = checkpoint_key(dag.dag_id, run.run_id, "upload", -1)
    assert VariableCheckpoint(key).load() == {"format": 1, "left": "for the test to read"}
    VariableCheckpoint(key).clear()
