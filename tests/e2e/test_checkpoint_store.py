"""Which checkpoint store the operator picks, in real DAGs (``dag.test()``) over loopback HTTP.

On Airflow 3.3 and later the default (``checkpoint="auto"``) keeps progress in Airflow's task state
store; a state over the store's cap goes to an Airflow Variable, loudly. Both are read back by the
retry, which must not send a confirmed batch again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_klar.sandbox.fake_data import fake_orders
from tests.e2e import _dags
from tests.e2e._dags import ScriptedKlar, run_upload, summary_of, task_instances, write_jsonl

# The scripted Klar of the resume tests, as a fixture of this module.
scripted_klar = _dags.scripted_klar

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _task_state(dag_run: Any, task_id: str) -> Any:
    """The upload's checkpoint in the task state store of ``task_id`` (``None`` when there is none)."""
    from airflow._shared.state import TaskScope
    from airflow.state import get_state_backend

    from airflow_provider_klar.upload.checkpoint import TASK_STATE_KEY

    scope = TaskScope(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, map_index=-1)
    return get_state_backend().get(scope, TASK_STATE_KEY)


@pytest.mark.airflow3_only  # the task state store came with Airflow 3.3
@pytest.mark.parametrize("cap", [65_535, 300], ids=["task_state_store", "over_the_cap"])
def test_the_default_checkpoint_lives_in_the_task_state_store_and_a_retry_resumes_from_it(  # noqa: PLR0917
    store_dag: Callable[[Any], None],
    scripted_klar: ScriptedKlar,
    airflow_db: Path,
    tmp_path: Path,
    cap: int,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow_provider_klar.upload.checkpoint import (
        TaskStateCheckpoint,
        VariableCheckpoint,
        checkpoint_key,
    )

    monkeypatch.setenv("AIRFLOW__STATE_STORE__MAX_VALUE_STORAGE_BYTES", str(cap))
    # What the retry's store loaded, seen through the real store (dag.test runs tasks in this process).
    loaded: list[tuple[str, Any]] = []
    real_load = TaskStateCheckpoint.load

    def spy(self: TaskStateCheckpoint) -> Any:
        state = real_load(self)
        loaded.append(("variable" if self._fallback_used else "task_state_store", state))
        return state

    monkeypatch.setattr(TaskStateCheckpoint, "load", spy)
    source = write_jsonl(tmp_path / "orders.jsonl", list(fake_orders(200)))
    # The first try gets 401 on its 5th request (auth errors are not retried inside the hook).
    scripted_klar.fail = lambda n: 401 if n == 5 else None

    dag_id = f"klar_e2e_task_state_{cap}"
    dag_run = run_upload(
        dag_id,
        store_dag,
        path=str(source),
        batch_size=20,
        max_concurrency=1,
        retries=1,
        retry_delay=timedelta(0),
    )

    assert dag_run.state == "success"
    ti = task_instances(dag_run, "upload")[0]
    assert ti.try_number == 2
    # Try 1 confirmed 4 batches (positions 0..79), its 5th was refused; try 2 sent the other 6.
    assert scripted_klar.answers == [201] * 4 + [401] + [201] * 6
    first, second = scripted_klar.received[:4], scripted_klar.received[4:]
    assert not {i for b in first for i in b} & {i for b in second for i in b}
    summary = summary_of(ti)
    assert (summary["records"], summary["accepted"], summary["resumed_records"]) == (200, 200, 80)

    where = "task_state_store" if cap > 300 else "variable"
    assert loaded[0] == ("task_state_store", None)  # the first try found nothing
    assert loaded[1][0] == where
    assert loaded[1][1]["confirmed"] == [[0, 79]]
    out = capfd.readouterr().out
    assert "Progress is checkpointed in the task state store (key klar_upload_checkpoint)" in out
    if cap == 300:
        assert "more than the task state store's max_value_storage_bytes=300" in caplog.text
    # Done: nothing is left behind in either store.
    assert _task_state(dag_run, "upload") is None
    assert VariableCheckpoint(checkpoint_key(dag_id, dag_run.run_id, "upload", -1)).load() is None


def test_checkpoint_task_state_store_is_refused_where_it_does_not_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_klar.exceptions import KlarConfigurationError
    from airflow_provider_klar.operators.klar import KlarUploadOperator

    class TI:
        dag_id, run_id, task_id, map_index = "d", "r", "t", -1

    op = KlarUploadOperator(task_id="t", records=[], checkpoint="task_state_store")
    with pytest.raises(KlarConfigurationError, match=r"needs Airflow 3\.3 or later"):
        op._checkpoint_store({"ti": TI()})  # type: ignore[arg-type]  # an Airflow 3.2 context
    auto = KlarUploadOperator(task_id="t", records=[])
    assert type(auto._checkpoint_store({"ti": TI()})).__name__ == "VariableCheckpoint"  # type: ignore[arg-type]
