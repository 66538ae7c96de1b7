"""KlarStatusSensor's poke, deferral, resumption and soft_fail rules, with a fake hook (no network)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    PokeReturnValue,
    TaskDeferred,
)

from airflow_provider_klar.exceptions import (
    KlarAuthError,
    KlarConfigurationError,
    KlarError,
    KlarNotFoundError,
    KlarSubmissionFailedError,
    KlarTransientError,
)
from airflow_provider_klar.results import KlarStatus
from airflow_provider_klar.sensors.klar import DEFERRAL_GRACE_S, KlarStatusSensor
from airflow_provider_klar.triggers.klar import KlarStatusTrigger
from tests.unit._status_fakes import ScriptedStatusHook

RUN_START = datetime(2025, 7, 1, 6, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return RUN_START + timedelta(minutes=minutes)


def status(success: datetime | None = None, failure: datetime | None = None, total: int = 10) -> KlarStatus:
    return KlarStatus("orders", total, 2, success, failure)


def context(start: datetime | None = RUN_START, logical: datetime | None = None) -> Any:
    return {
        "dag_run": SimpleNamespace(start_date=start),
        "logical_date": logical,
        "data_interval_start": None,
    }


def make_sensor(hook: ScriptedStatusHook | None = None, **kwargs: Any) -> KlarStatusSensor:
    kwargs.setdefault("task_id", "wait_for_klar")
    kwargs.setdefault("poke_interval", 0)
    kwargs.setdefault("deferrable", False)
    sensor = KlarStatusSensor(**kwargs)
    if hook is not None:
        sensor._hook = hook  # type: ignore[assignment]
    return sensor


# -- since --------------------------------------------------------------------------------------


def test_since_none_is_the_dag_run_start() -> None:
    assert make_sensor().resolve_since(context()) == RUN_START


def test_since_none_falls_back_to_the_logical_date() -> None:
    assert make_sensor().resolve_since(context(start=None, logical=at(-60))) == at(-60)


def test_since_none_without_any_run_time_is_a_clear_error() -> None:
    with pytest.raises(KlarConfigurationError, match="pass since explicitly"):
        make_sensor().resolve_since(context(start=None))


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2025-07-01T06:05:00Z", at(5)),  # an upload summary's started_at
        ("2025-07-01T06:05:00.123456+00:00", at(5) + timedelta(microseconds=123456)),
        ("2025-07-01T08:05:00+02:00", at(5)),
        (datetime(2025, 7, 1, 6, 5), at(5)),  # naive: UTC
        ("", RUN_START),  # a template that rendered to nothing: the run's start
    ],
)
def test_since_forms(since: Any, expected: datetime) -> None:
    assert make_sensor(since=since).resolve_since(context()) == expected


def test_since_garbage_names_the_argument() -> None:
    with pytest.raises(KlarConfigurationError, match=r"since='None' is not an ISO 8601"):
        make_sensor(since="None").resolve_since(context())


def test_since_and_min_total_are_templated() -> None:
    assert {"since", "min_total", "resource", "klar_conn_id"} <= set(KlarStatusSensor.template_fields)


# -- poke ---------------------------------------------------------------------------------------


def test_poke_done_returns_the_status_for_xcom() -> None:
    hook = ScriptedStatusHook([status(at(3))])
    result = make_sensor(hook).poke(context())
    assert isinstance(result, PokeReturnValue)
    assert result.is_done
    assert result.xcom_value == status(at(3)).to_dict()
    assert hook.calls == ["orders"]


def test_poke_waits_for_a_fresh_success_and_min_total() -> None:
    assert make_sensor(ScriptedStatusHook([status(at(-3))])).poke(context()) is False
    assert make_sensor(ScriptedStatusHook([status(at(3), total=4)]), min_total="5").poke(context()) is False
    assert make_sensor(ScriptedStatusHook([status(at(3), total=5)]), min_total="5").poke(context())


def test_poke_fails_at_once_when_the_latest_submission_failed() -> None:
    hook = ScriptedStatusHook([status(at(1), at(2))])
    with pytest.raises(KlarSubmissionFailedError) as info:
        make_sensor(hook).poke(context())
    assert "failed at 2025-07-01T06:02:00Z" in str(info.value)
    assert "2025-07-01T06:01:00Z" in str(info.value)


def test_poke_ignores_a_failure_when_told_to() -> None:
    assert make_sensor(ScriptedStatusHook([status(at(1), at(2))]), fail_on_failure=False).poke(context())


@pytest.mark.parametrize(
    "error", [KlarTransientError("HTTP 503 on all 5 attempt(s)", http_status=503), httpx.ReadTimeout("slow")]
)
def test_poke_keeps_waiting_through_transient_errors(error: Exception) -> None:
    assert make_sensor(ScriptedStatusHook([error])).poke(context()) is False


def test_poke_propagates_final_errors() -> None:
    with pytest.raises(KlarAuthError):
        make_sensor(ScriptedStatusHook([KlarAuthError("HTTP 401")])).poke(context())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"resource": "invoices"}, "Unknown Klar resource"), ({"min_total": "many"}, "min_total")],
)
def test_poke_rejects_bad_arguments_before_any_request(kwargs: dict[str, Any], match: str) -> None:
    hook = ScriptedStatusHook([status(at(3))])
    with pytest.raises(KlarConfigurationError, match=match):
        make_sensor(hook, **kwargs).poke(context())
    assert hook.calls == []


def test_execute_in_poke_mode_polls_until_done_and_closes_the_hook() -> None:
    hook = ScriptedStatusHook([status(at(-3)), KlarTransientError("HTTP 503"), status(at(3))])
    sensor = make_sensor(hook, timeout=30)
    assert sensor.execute(context()) == status(at(3)).to_dict()
    assert len(hook.calls) == 3
    assert hook.closed


def test_execute_in_poke_mode_fails_on_a_failed_submission_even_with_soft_fail() -> None:
    hook = ScriptedStatusHook([status(at(-3)), status(at(-3), at(2))])
    with pytest.raises(KlarSubmissionFailedError):
        make_sensor(hook, timeout=30, soft_fail=True).execute(context())


def test_execute_in_poke_mode_times_out_or_skips_with_soft_fail() -> None:
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(ScriptedStatusHook([status(at(-3))]), timeout=0).execute(context())
    with pytest.raises(AirflowSkipException):
        make_sensor(ScriptedStatusHook([status(at(-3))]), timeout=0, soft_fail=True).execute(context())


# -- deferrable ---------------------------------------------------------------------------------


def test_deferrable_defers_to_the_trigger_after_one_check() -> None:
    hook = ScriptedStatusHook([status(at(-3))])
    sensor = make_sensor(
        hook,
        deferrable=True,
        timeout=600,
        poke_interval=15,
        min_total=3,
        since="2025-07-01T06:05:00Z",
        klar_conn_id="klar_prod",
        max_attempts=4,
        max_retry_wait=2.5,
        max_retry_time=90,
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(context())
    after = time.time()
    deferred = info.value
    assert hook.calls == ["orders"]
    assert hook.closed
    assert deferred.method_name == "execute_complete"
    trigger = deferred.trigger
    assert isinstance(trigger, KlarStatusTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["since"] == "2025-07-01T06:05:00Z"
    assert kwargs["klar_conn_id"] == "klar_prod"
    assert kwargs["min_total"] == 3
    assert kwargs["poll_interval"] == 15
    assert kwargs["fail_on_failure"] is True
    assert (kwargs["max_attempts"], kwargs["max_retry_wait"], kwargs["max_retry_time"]) == (4, 2.5, 90.0)
    # The trigger's deadline is the task's start plus timeout, as in poke mode.
    assert before + 600 <= kwargs["end_time"] <= after + 600
    assert timedelta(seconds=600) < deferred.timeout <= timedelta(seconds=600 + DEFERRAL_GRACE_S)


def test_deferrable_returns_at_once_when_already_done() -> None:
    sensor = make_sensor(ScriptedStatusHook([status(at(3))]), deferrable=True)
    assert sensor.execute(context()) == status(at(3)).to_dict()


def test_deferrable_fails_at_once_on_a_failed_submission() -> None:
    with pytest.raises(KlarSubmissionFailedError):
        make_sensor(ScriptedStatusHook([status(at(1), at(2))]), deferrable=True).execute(context())


def test_deferrable_default_comes_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from airflow_provider_klar.sensors import klar as module

    # The default is read when the module is imported: import it again under each setting.
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "true")
    try:
        assert importlib.reload(module).KlarStatusSensor(task_id="t").deferrable is True
    finally:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        importlib.reload(module)
    assert module.KlarStatusSensor(task_id="t").deferrable is False


def test_resumes_with_the_status_on_success() -> None:
    sensor = make_sensor(deferrable=True)
    event = {"status": "success", "message": "ok", "klar_status": status(at(3)).to_dict()}
    assert sensor.resume_execution("execute_complete", {"event": event}, context()) == event["klar_status"]


@pytest.mark.parametrize(
    ("event", "error", "match"),
    [
        ({"status": "failed", "message": "failed at X; success at Y"}, KlarSubmissionFailedError, "at X"),
        ({"status": "timeout", "message": "no luck"}, AirflowSensorTimeout, "timed out: no luck"),
        ({"status": "error", "error_type": "KlarAuthError", "message": "401"}, KlarAuthError, "401"),
        ({"status": "error", "error_type": "KlarNotFoundError", "message": "404"}, KlarNotFoundError, "404"),
        ({"status": "error", "error_type": "RuntimeError", "message": "boom"}, KlarError, "boom"),
        ({"status": "success"}, AirflowException, "carries no status"),
        ({"status": "maybe"}, AirflowException, "unknown status 'maybe'"),
        ({"state": "success"}, AirflowException, "unexpected event"),
        (None, AirflowException, "unexpected event"),
    ],
)
def test_execute_complete_raises_on_anything_but_success(
    event: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make_sensor(deferrable=True).execute_complete(context(), event)


def test_soft_fail_skips_a_deferred_timeout_but_not_a_failed_submission() -> None:
    sensor = make_sensor(deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution(
            "execute_complete", {"event": {"status": "timeout", "message": "m"}}, context()
        )
    # Airflow's own deferral timeout (the trigger never answered) counts as a sensor timeout too.
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("__fail__", {"error": "Trigger timeout"}, context())
    with pytest.raises(KlarSubmissionFailedError):
        sensor.resume_execution(
            "execute_complete", {"event": {"status": "failed", "message": "m"}}, context()
        )
    with pytest.raises(KlarAuthError):
        sensor.resume_execution(
            "execute_complete",
            {"event": {"status": "error", "error_type": "KlarAuthError", "message": "401"}},
            context(),
        )


def test_without_soft_fail_a_deferral_timeout_is_a_sensor_timeout() -> None:
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(deferrable=True).resume_execution("__fail__", {"error": "Trigger timeout"}, context())


def test_never_fail_skips_a_failed_submission_in_every_mode() -> None:
    deferred = make_sensor(deferrable=True, never_fail=True)
    with pytest.raises(AirflowSkipException):
        deferred.resume_execution(
            "execute_complete", {"event": {"status": "failed", "message": "m"}}, context()
        )
    poking = make_sensor(ScriptedStatusHook([status(at(1), at(2))]), never_fail=True, timeout=30)
    with pytest.raises(AirflowSkipException):
        poking.execute(context())


class FakeAsyncHook:
    def __init__(self, script: list[KlarStatus]) -> None:
        self.script = script
        self.closed = False

    async def aget_status(self, resource: str) -> KlarStatus:
        return self.script.pop(0)

    def close(self) -> None:
        self.closed = True


async def test_defers_then_resumes_with_the_event_of_the_rebuilt_trigger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.airflow_compat import import_string

    sensor = make_sensor(ScriptedStatusHook([status(at(-3))]), deferrable=True, poke_interval=0, timeout=60)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(context())
    # The triggerer rebuilds the trigger from its serialized form, in another process.
    classpath, kwargs = info.value.trigger.serialize()
    trigger = import_string(classpath)(**kwargs)
    async_hook = FakeAsyncHook([status(at(-1)), status(at(4), total=14)])
    monkeypatch.setattr(trigger, "_make_hook", lambda: async_hook)
    events = [event async for event in trigger.run()]
    assert async_hook.closed
    assert len(events) == 1
    result = sensor.resume_execution(info.value.method_name, {"event": events[0].payload}, context())
    assert result == status(at(4), total=14).to_dict()


def test_deferrable_with_no_time_left_times_out_without_deferring() -> None:
    with pytest.raises(AirflowSensorTimeout, match=r"confirmed no orders submission within 0\.0 seconds"):
        make_sensor(ScriptedStatusHook([status(at(-3))]), deferrable=True, timeout=0).execute(context())
    with pytest.raises(AirflowSkipException):
        make_sensor(ScriptedStatusHook([status(at(-3))]), deferrable=True, timeout=0, soft_fail=True).execute(
            context()
        )


def test_the_retry_settings_reach_the_hook_and_are_checked() -> None:
    sensor = KlarStatusSensor(task_id="s", max_attempts=2, max_retry_wait=1.0, max_retry_time=30)
    policy = sensor.hook.retry_policy
    assert (policy.max_attempts, policy.max_retry_wait, policy.max_retry_time) == (2, 1.0, 30)
    with pytest.raises(KlarConfigurationError, match="max_retry_time must be a positive number"):
        KlarStatusSensor(task_id="s", max_retry_time=-1)
