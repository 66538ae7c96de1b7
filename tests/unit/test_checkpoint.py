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
from airflow_provider_klar.upload.checkpoint import (
    STATE_BUDGET,
    TASK_STATE_KEY,
    TaskStateCheckpoint,
    _in_task_sdk_runtime,
    bounded_state,
)

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
    from airflow.providers.common.compat.sdk import DAG, get_current_context, task

    from tests.airflow_compat import AIRFLOW_3

    with DAG(dag_id, schedule=None, catchup=False) as dag:

        @task
        def first_try() -> None:
            ti = get_current_context()["ti"]
            # On Airflow 3 the task SDK's Variable API is what is exercised; Airflow 2 tasks use the ORM.
            assert _in_task_sdk_runtime() == AIRFLOW_3
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


# -- Airflow's task state store (3.3+) ---------------------------------------------------------------


def _big_state(ids: int = 100, errors: int = 20, text: int = 2_000) -> dict[str, Any]:
    """A checkpoint whose free-text parts are as long as an unlucky upload could make them."""
    return {
        "format": 1,
        "confirmed": [[0, 99_999], [100_500, 150_000]],
        "tally": {
            "records": 150_000,
            "accepted": 149_000,
            "rejected_ids": [f"ORD-{i}-" + "x" * text for i in range(ids)],
            "errors": [f"line {i} of orders.jsonl: " + "y" * text for i in range(errors)],
            "warnings": {
                "unknown_fields": {f"field{i}": 3 for i in range(50)},
                "pitfalls": {},
                "examples": {f"field{i}": "z" * text for i in range(50)},
            },
        },
    }


def _size(state: Any) -> int:
    return len(json.dumps(state, separators=(",", ":"), sort_keys=True))


def test_bounded_state_cuts_free_text_and_keeps_counts_and_ranges() -> None:
    big = _big_state()
    assert _size(big) > 300_000

    small = bounded_state(big)

    assert _size(small) <= STATE_BUDGET
    assert small["confirmed"] == big["confirmed"]
    assert small["tally"]["records"] == 150_000
    assert small["tally"]["warnings"]["unknown_fields"] == big["tally"]["warnings"]["unknown_fields"]
    # What is left is the *first* ids and errors, each cut to a readable length.
    kept = small["tally"]["rejected_ids"]
    assert kept
    assert kept == [i[:199] + "\u2026" for i in big["tally"]["rejected_ids"][: len(kept)]]
    assert small["tally"]["errors"][0].startswith("line 0 of orders.jsonl: yyy")
    assert big["tally"]["rejected_ids"][0].endswith("x")  # the input is not changed
    # A state that fits is returned equal.
    assert bounded_state(STATE) == STATE
    fits = _big_state(ids=3, errors=2, text=10)
    assert bounded_state(fits) == fits


class FakeStateStore:
    """Stands in for ``context["task_state_store"]``: the same methods, values kept as JSON round-trips."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.sets = 0

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        assert value is not None
        self.values[key] = json.dumps(value)
        self.sets += 1

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class MemoryStore:
    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.cleared = 0

    location = "the memory fallback"

    def load(self) -> dict[str, Any] | None:
        return self.state

    def save(self, state: Any) -> None:
        self.state = dict(state)

    def clear(self) -> None:
        self.state = None
        self.cleared += 1


def test_task_state_checkpoint_round_trip() -> None:
    accessor, fallback = FakeStateStore(), MemoryStore()
    store = TaskStateCheckpoint(accessor, fallback=fallback, limit=65_535)
    assert isinstance(store, CheckpointStore)

    assert store.load() is None
    store.save(STATE)
    assert json.loads(accessor.values[TASK_STATE_KEY]) == STATE
    assert TaskStateCheckpoint(accessor, fallback=fallback).load() == STATE  # the next try
    store.clear()
    assert accessor.values == {}
    assert fallback.cleared == 0  # never used, never touched
    store.clear()


def test_task_state_checkpoint_over_the_cap_falls_back_loudly_and_the_next_try_finds_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    accessor, fallback = FakeStateStore(), MemoryStore()
    store = TaskStateCheckpoint(accessor, fallback=fallback, limit=100)
    store.save({"format": 1, "confirmed": [[0, 1]]})
    assert TASK_STATE_KEY in accessor.values

    ranges = [[i * 10, i * 10 + 4] for i in range(30)]  # ranges are never cut: this cannot fit 100 bytes
    store.save({"format": 1, "confirmed": ranges})

    assert "more than the task state store's max_value_storage_bytes=100" in caplog.text
    assert "Raise [state_store] max_value_storage_bytes or pass checkpoint='variable'" in caplog.text
    # The smaller, older state is gone from the store, so the next try reads the fallback.
    assert accessor.values == {}
    assert fallback.state == {"format": 1, "confirmed": ranges}
    store.save({"format": 1, "confirmed": [[0, 2]]})  # the rest of the try stays in the fallback
    assert fallback.state == {"format": 1, "confirmed": [[0, 2]]}
    assert caplog.text.count("more than the task state store's") == 1

    retry = TaskStateCheckpoint(accessor, fallback=fallback, limit=100)
    assert retry.load() == {"format": 1, "confirmed": [[0, 2]]}
    retry.clear()
    assert fallback.state is None


def test_task_state_checkpoint_without_fallback_says_what_to_do() -> None:
    store = TaskStateCheckpoint(FakeStateStore(), limit=10)
    with pytest.raises(ValueError, match="raise \\[state_store\\] max_value_storage_bytes or pass"):
        store.save(STATE)
    unlimited = TaskStateCheckpoint(FakeStateStore(), limit=0)
    unlimited.save(_big_state(text=10))  # 0: no cap


def test_task_state_checkpoint_ignores_a_value_that_is_not_an_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    accessor = FakeStateStore()
    accessor.set(TASK_STATE_KEY, [1, 2])
    assert TaskStateCheckpoint(accessor, fallback=MemoryStore()).load() is None
    assert "not a JSON object; starting from the beginning" in caplog.text


def test_task_state_checkpoint_reads_the_cap_from_the_airflow_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW__STATE_STORE__MAX_VALUE_STORAGE_BYTES", "1234")
    assert TaskStateCheckpoint(FakeStateStore()).limit == 1234


def _task_state_dag(dag_id: str) -> Any:
    from airflow.sdk import DAG, get_current_context, task

    with DAG(dag_id, schedule=None, catchup=False) as dag:

        @task(retries=1, retry_delay=0)
        def upload() -> None:
            context = get_current_context()
            store = TaskStateCheckpoint(context["task_state_store"], limit=65_535)
            if context["ti"].try_number == 1:
                assert store.load() is None
                store.save(STATE)
                raise RuntimeError("the first try dies after saving")
            # The retry of the same task instance finds what the first try saved.
            assert store.load() == STATE
            store.clear()
            assert store.load() is None

        upload()
    return dag


@pytest.mark.airflow3_only  # the task state store came with Airflow 3.3
def test_task_state_checkpoint_survives_a_retry_in_a_running_task(store_dag: Callable[[Any], None]) -> None:
    dag = _task_state_dag(f"klar_task_state_{time.time_ns()}")
    store_dag(dag)

    run = dag.test()

    assert str(getattr(run.state, "value", run.state)) == "success"
    ti = run.get_task_instance("upload")
    assert ti is not None
    assert ti.try_number == 2
