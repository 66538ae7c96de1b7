"""KlarStatusTrigger and the shared done/failed decision, driven by a scripted fake hook (no network)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import types
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_klar.exceptions import (
    KlarAuthError,
    KlarConfigurationError,
    KlarNotFoundError,
    KlarResponseError,
    KlarTransientError,
)
from airflow_provider_klar.hooks.klar import KlarHook
from airflow_provider_klar.results import KlarStatus
from airflow_provider_klar.triggers import klar as trigger_module
from airflow_provider_klar.triggers.klar import (
    MAX_BACKOFF_S,
    KlarStatusTrigger,
    StatusState,
    check_status,
    to_utc,
)
from tests.unit._status_fakes import ScriptedStatusHook

SINCE = datetime(2025, 7, 1, 6, 0, tzinfo=timezone.utc)


def status(
    success: datetime | None = None, failure: datetime | None = None, total: int = 10, batch: int = 2
) -> KlarStatus:
    return KlarStatus("orders", total, batch, success, failure)


def at(minutes: float) -> datetime:
    """A time ``minutes`` after SINCE (negative: before)."""
    return SINCE + timedelta(minutes=minutes)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the trigger's pauses instead of waiting them."""
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    patch_trigger_sleep(monkeypatch, fake_sleep)
    return recorded


def patch_trigger_sleep(monkeypatch: pytest.MonkeyPatch, fake: Any) -> None:
    """Replace ``asyncio.sleep`` as the trigger module sees it, and only there.

    Patching the asyncio module itself would also record the pauses of every other event loop in the
    process, such as a sandbox server's, which uvicorn ticks every 0.1 s in its own thread.
    """
    view = types.SimpleNamespace(**{**vars(asyncio), "sleep": fake})
    monkeypatch.setattr(trigger_module, "asyncio", view)


def make_trigger(
    monkeypatch: pytest.MonkeyPatch, hook: ScriptedStatusHook, **overrides: Any
) -> KlarStatusTrigger:
    kwargs: dict[str, Any] = {
        "resource": "orders",
        "since": SINCE.isoformat(),
        "end_time": time.time() + 3600,
        "poll_interval": 5.0,
    }
    kwargs.update(overrides)
    trigger = KlarStatusTrigger(**kwargs)
    monkeypatch.setattr(trigger, "_make_hook", lambda: hook)
    return trigger


async def first_event(trigger: KlarStatusTrigger) -> dict[str, Any]:
    events = [event async for event in trigger.run()]
    assert len(events) == 1, events
    return events[0].payload


# -- the decision table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        (None, None, 0, None, True, StatusState.WAITING),  # nothing ever submitted
        (at(-5), None, 10, None, True, StatusState.WAITING),  # stale success
        (at(0), None, 10, None, True, StatusState.DONE),  # success exactly at since counts
        (at(3), None, 10, None, True, StatusState.DONE),
        (at(3), None, 10, 10, True, StatusState.DONE),  # total == min_total is enough
        (at(3), None, 9, 10, True, StatusState.WAITING),  # not enough objects yet
        (at(3), at(1), 10, None, True, StatusState.DONE),  # failure before the success
        (at(3), at(5), 10, None, True, StatusState.FAILED),  # failure after the success
        (at(3), at(5), 10, None, False, StatusState.DONE),  # ... ignored when not failing on failure
        (at(-5), at(5), 10, None, True, StatusState.FAILED),  # only a stale success, then a failure
        (None, at(5), 10, None, True, StatusState.FAILED),  # never a success
        (None, at(5), 10, None, False, StatusState.WAITING),
        (at(-5), at(-1), 10, None, True, StatusState.WAITING),  # failure before since: not ours
        (at(3), at(3), 10, None, True, StatusState.DONE),  # a tie is not "newer than the success"
        (at(3), at(5), 9, 10, True, StatusState.FAILED),  # failure wins over min_total
    ],
)
def test_check_status_decision_table(
    case: tuple[datetime | None, datetime | None, int, int | None, bool, StatusState],
) -> None:
    success, failure, total, min_total, fail_on_failure, expected = case
    check = check_status(
        status(success, failure, total), since=SINCE, min_total=min_total, fail_on_failure=fail_on_failure
    )
    assert check.state is expected
    assert check.reason


def test_failed_reason_gives_both_times() -> None:
    check = check_status(status(at(3), at(5)), since=SINCE)
    assert check.state is StatusState.FAILED
    assert "failed at 2025-07-01T06:05:00Z" in check.reason
    assert "2025-07-01T06:03:00Z" in check.reason
    assert "orders" in check.reason


def test_failed_reason_says_never_without_a_success() -> None:
    assert "was at never" in check_status(status(None, at(5)), since=SINCE).reason


# -- time parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-07-01T06:00:00Z", SINCE),
        ("2025-07-01T06:00:00.000z", SINCE),
        ("2025-07-01T08:00:00+02:00", SINCE),
        ("2025-07-01T06:00:00", SINCE),  # naive: UTC
        (" 2025-07-01T06:00:00Z ", SINCE),
        (datetime(2025, 7, 1, 6, 0), SINCE),
        (datetime(2025, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=2))), SINCE),
        (date(2025, 7, 1), SINCE - timedelta(hours=6)),
    ],
)
def test_to_utc(value: Any, expected: datetime) -> None:
    parsed = to_utc(value)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", ["yesterday", "None", "2025-13-01T00:00:00Z", 12345])
def test_to_utc_rejects_what_is_not_a_time(value: Any) -> None:
    with pytest.raises(KlarConfigurationError, match="since"):
        to_utc(value)


# -- serialization ------------------------------------------------------------------------------


def test_serialize_round_trips_with_primitives_only() -> None:
    from tests.airflow_compat import import_string

    trigger = KlarStatusTrigger(
        resource="refunds",
        since=datetime(2025, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=2))),
        end_time="2025-07-02T06:00:00Z",
        klar_conn_id="klar_prod",
        api_version="12.2022",
        min_total=5,
        fail_on_failure=False,
        poll_interval=30,
        max_attempts=3,
        max_retry_wait=5,
        max_retry_time=45,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_klar.triggers.klar.KlarStatusTrigger"
    assert kwargs == {
        "resource": "refunds",
        "since": "2025-07-01T06:00:00Z",
        "end_time": datetime(2025, 7, 2, 6, tzinfo=timezone.utc).timestamp(),
        "klar_conn_id": "klar_prod",
        "api_version": "12.2022",
        "min_total": 5,
        "fail_on_failure": False,
        "poll_interval": 30.0,
        "max_attempts": 3,
        "max_retry_wait": 5.0,
        "max_retry_time": 45.0,
    }
    # The hook the triggerer builds uses the retry settings.
    policy = trigger._make_hook().retry_policy
    assert (policy.max_attempts, policy.max_retry_wait, policy.max_retry_time) == (3, 5.0, 45.0)
    # Primitives only: JSON survives, and the rebuilt trigger serializes to the same thing.
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)


def test_serialize_holds_no_secret() -> None:
    _, kwargs = KlarStatusTrigger(resource="orders", since=SINCE, end_time=0).serialize()
    assert not {"token", "password"} & set(kwargs)


# -- run() --------------------------------------------------------------------------------------


async def test_run_fires_success_once_confirmed(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    hook = ScriptedStatusHook([status(at(-5)), status(at(-5)), status(at(2), total=12)])
    event = await first_event(make_trigger(monkeypatch, hook))
    assert event["status"] == "success"
    assert event["klar_status"] == status(at(2), total=12).to_dict()
    assert "2025-07-01T06:02:00Z" in event["message"]
    assert hook.calls == ["orders"] * 3
    assert sleeps == [5.0, 5.0]
    assert hook.closed


async def test_run_waits_for_min_total(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    hook = ScriptedStatusHook([status(at(2), total=3), status(at(4), total=8)])
    event = await first_event(make_trigger(monkeypatch, hook, min_total=8))
    assert event["status"] == "success"
    assert event["klar_status"]["total"] == 8
    assert len(hook.calls) == 2


async def test_run_fires_failed_with_both_times(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    hook = ScriptedStatusHook([status(at(-5)), status(at(-5), at(1))])
    event = await first_event(make_trigger(monkeypatch, hook))
    assert event["status"] == "failed"
    assert "failed at 2025-07-01T06:01:00Z" in event["message"]
    assert "2025-06-30T" not in event["message"]
    assert "2025-07-01T05:55:00Z" in event["message"]
    assert event["klar_status"]["last_failure"] == at(1).isoformat()
    assert hook.closed


async def test_run_keeps_waiting_after_a_failure_without_fail_on_failure(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    hook = ScriptedStatusHook([status(at(-5), at(1)), status(at(2), at(1))])
    event = await first_event(make_trigger(monkeypatch, hook, fail_on_failure=False))
    assert event["status"] == "success"
    assert len(hook.calls) == 2


async def test_run_fires_timeout_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    hook = ScriptedStatusHook([status(at(-5))])
    event = await first_event(make_trigger(monkeypatch, hook, end_time=time.time() - 1))
    assert event["status"] == "timeout"
    assert "Klar confirmed no orders submission made since 2025-07-01T06:00:00Z" in event["message"]
    assert event["klar_status"] == status(at(-5)).to_dict()
    assert hook.calls == ["orders"]  # one last look, no waiting past the deadline
    assert sleeps == []
    assert hook.closed


async def test_run_never_sleeps_past_the_deadline(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(trigger_module.time, "time", lambda: clock[0])

    hook = ScriptedStatusHook([status(at(-5))])
    trigger = make_trigger(monkeypatch, hook, end_time=1_012.0, poll_interval=5.0)

    async def advancing_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    patch_trigger_sleep(monkeypatch, advancing_sleep)
    event = await first_event(trigger)
    assert event["status"] == "timeout"
    assert sleeps == [5.0, 5.0, 2.0]  # the last pause ends at the deadline, where one last poll happens
    assert len(hook.calls) == 4


async def test_run_retries_transient_errors_with_backoff(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    hook = ScriptedStatusHook(
        [
            status(at(-5)),
            KlarTransientError(
                "GET /orders/status failed with HTTP 503 on all 5 attempt(s).", http_status=503
            ),
            httpx.ConnectError("connection refused"),
            KlarTransientError("HTTP 429", http_status=429),
            status(at(-5)),
            status(at(3)),
        ]
    )
    event = await first_event(make_trigger(monkeypatch, hook, poll_interval=2.0))
    assert event["status"] == "success"
    assert len(hook.calls) == 6
    # Normal pause, then doubling after each consecutive transient error, then back to normal.
    assert sleeps == [2.0, 4.0, 8.0, 16.0, 2.0]
    # Airflow routes the trigger's log through structlog to stdout.
    log = capsys.readouterr().out
    assert log.count("status is unavailable") == 3
    assert "HTTP 503" in log
    assert "ConnectError: connection refused" in log
    assert "3 transient error(s) in a row, retrying in 16.0 s" in log


def test_backoff_is_capped() -> None:
    trigger = KlarStatusTrigger(resource="orders", since=SINCE, end_time=0, poll_interval=60)
    assert trigger._next_delay(0) == 60
    assert trigger._next_delay(1) == 120
    assert trigger._next_delay(20) == MAX_BACKOFF_S
    slow = KlarStatusTrigger(resource="orders", since=SINCE, end_time=0, poll_interval=900)
    assert slow._next_delay(3) == 900  # never shorter than the poll interval itself


async def test_transient_errors_until_the_deadline_end_in_timeout(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    hook = ScriptedStatusHook([KlarTransientError("HTTP 503", http_status=503)])
    event = await first_event(make_trigger(monkeypatch, hook, end_time=time.time() - 1))
    assert event["status"] == "timeout"
    assert event["klar_status"] is None


@pytest.mark.parametrize(
    ("error", "error_type"),
    [
        (KlarAuthError("Klar refused the token of connection 'klar_default' (HTTP 401)."), "KlarAuthError"),
        (KlarNotFoundError("HTTP 404 for GET /orders/status"), "KlarNotFoundError"),
        (KlarResponseError("status answer is not JSON"), "KlarResponseError"),
        (RuntimeError("boom"), "RuntimeError"),
    ],
)
async def test_run_fires_error_on_final_errors(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float], error: Exception, error_type: str
) -> None:
    hook = ScriptedStatusHook([status(at(-5)), error, status(at(3))])
    event = await first_event(make_trigger(monkeypatch, hook))
    assert event == {"status": "error", "error_type": error_type, "message": str(error)}
    assert len(hook.calls) == 2  # no retry after a final error
    assert hook.closed


async def test_run_parses_since_from_the_serialized_string(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    hook = ScriptedStatusHook([status(at(1))])
    # since one minute after the success: still waiting, so a deadline in the past ends with timeout.
    trigger = make_trigger(monkeypatch, hook, since="2025-07-01T06:02:00Z", end_time=time.time() - 1)
    assert (await first_event(trigger))["status"] == "timeout"


async def test_a_poll_hanging_past_the_deadline_is_abandoned(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    class HangingHook(ScriptedStatusHook):
        async def aget_status(self, resource: str) -> KlarStatus:
            self.calls.append(resource)
            await asyncio.Event().wait()  # never answers
            raise AssertionError("unreachable")

    monkeypatch.setattr(trigger_module, "DEADLINE_GRACE_S", 0.01)
    hook = HangingHook([])
    event = await first_event(make_trigger(monkeypatch, hook, end_time=time.time() - 1))
    assert event["status"] == "timeout"
    assert hook.calls == ["orders"]
    assert hook.closed


# -- run() with the real hook over a mocked transport ---------------------------------------------

BASE_URL = "https://klar.example"
TOKEN = "eyJ.secret-token.sig"


@pytest.fixture
def real_hook(monkeypatch: pytest.MonkeyPatch) -> KlarHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT",
        json.dumps({"conn_type": "klar", "host": BASE_URL, "password": TOKEN}),
    )
    hook = KlarHook()

    async def no_wait(seconds: float) -> None:
        return None

    hook.retry_policy = dataclasses.replace(hook.retry_policy, async_sleep=no_wait, sleep=lambda s: None)
    return hook


def status_json(success: str | None, failure: str | None = None) -> dict[str, Any]:
    return {"total": "12", "lastBatchCount": "2", "lastSuccess": success, "lastFailure": failure}


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_real_hook_503_twice_then_success_only_reads(
    respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, real_hook: KlarHook, sleeps: list[float]
) -> None:
    route = respx_mock.get(f"{BASE_URL}/orders/status").mock(
        side_effect=[
            httpx.Response(200, json=status_json("2025-07-01T05:00:00.000Z")),
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(200, json=status_json("2025-07-01T06:00:01.281Z")),
        ]
    )
    posts = respx_mock.post(url__startswith=BASE_URL).mock(return_value=httpx.Response(201))
    trigger = make_trigger(monkeypatch, real_hook)
    monkeypatch.setattr(trigger, "_make_hook", lambda: real_hook)
    event = await first_event(trigger)
    assert event["status"] == "success", event
    assert event["klar_status"]["total"] == 12
    assert event["klar_status"]["last_success"] == "2025-07-01T06:00:01.281000+00:00"
    assert route.call_count == 4
    assert posts.call_count == 0
    assert all(call.request.method == "GET" for call in respx_mock.calls)
    assert route.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in json.dumps(event)


@pytest.mark.parametrize("code", [401, 403, 404])
@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_real_hook_final_errors_end_with_an_error_event(
    respx_mock: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
    real_hook: KlarHook,
    sleeps: list[float],
    code: int,
) -> None:
    route = respx_mock.get(f"{BASE_URL}/orders/status").mock(
        return_value=httpx.Response(code, json={"message": "nope"})
    )
    trigger = make_trigger(monkeypatch, real_hook)
    event = await first_event(trigger)
    assert event["status"] == "error"
    assert event["error_type"] == ("KlarNotFoundError" if code == 404 else "KlarAuthError")
    assert route.call_count == 1  # final: not retried
    assert TOKEN not in event["message"]
