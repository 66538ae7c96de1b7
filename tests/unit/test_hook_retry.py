"""The retry policy: which answers are retried, how long the hook waits, when it gives up.

Sleeps are recorded, not slept, so these tests run instantly and assert exact waits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from airflow_provider_klar.exceptions import (
    KlarAuthError,
    KlarConfigurationError,
    KlarNotFoundError,
    KlarRequestError,
    KlarTransientError,
)
from airflow_provider_klar.hooks._retry import RetryPolicy, TransientFailure, parse_retry_after
from airflow_provider_klar.hooks.klar import KlarHook

NOW = 1_700_000_000.0
ORDERS = [{"id": "A"}, {"id": "B"}]


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT",
        json.dumps({"conn_type": "klar", "host": "https://klar.test", "password": "retry-token"}),
    )


class Script:
    """A MockTransport handler that plays a list of answers and records requests and sleeps."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers: Iterator[httpx.Response | Exception] = iter(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def monotonic(self) -> float:
        """A clock that only the recorded sleeps advance: the time budget sees the waits."""
        return sum(self.sleeps)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def hook(self, **kwargs: float) -> KlarHook:
        hook = KlarHook(**kwargs)  # type: ignore[arg-type]
        hook._transport = httpx.MockTransport(self)
        hook.retry_policy = dataclasses.replace(
            hook.retry_policy, sleep=self.sleep, clock=lambda: NOW, monotonic=self.monotonic
        )
        return hook


def _valid() -> httpx.Response:
    return httpx.Response(201, json={"status": "VALID"})


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_codes_are_retried(status: int) -> None:
    script = Script(httpx.Response(status), _valid())
    result = script.hook().upload("orders", ORDERS)
    assert result.accepted_count == 2
    assert len(script.requests) == 2
    assert len(script.sleeps) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, KlarRequestError),
        (401, KlarAuthError),
        (403, KlarAuthError),
        (404, KlarNotFoundError),
        (422, KlarRequestError),
        (409, KlarRequestError),
    ],
)
def test_final_codes_are_not_retried(status: int, error: type[Exception]) -> None:
    script = Script(httpx.Response(status, json={"message": "no"}), _valid())
    with pytest.raises(error):
        script.hook().upload("orders", ORDERS)
    assert len(script.requests) == 1
    assert script.sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.ReadError("reset by peer"),
    ],
)
def test_network_errors_and_timeouts_are_retried(failure: Exception) -> None:
    script = Script(failure, _valid())
    assert script.hook().upload("orders", ORDERS).accepted_count == 2
    assert len(script.requests) == 2


def test_retry_after_seconds_is_honoured() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}), _valid())
    script.hook().upload("orders", ORDERS)
    assert script.sleeps == [7.0]


def test_retry_after_http_date_is_honoured() -> None:
    when = datetime.fromtimestamp(NOW, tz=timezone.utc) + timedelta(seconds=12)
    script = Script(
        httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)}), _valid()
    )
    script.hook().upload("orders", ORDERS)
    assert script.sleeps == [12.0]


def test_retry_after_is_capped_by_max_wait() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}), _valid())
    script.hook(max_retry_wait=20.0).upload("orders", ORDERS)
    assert script.sleeps == [20.0]


def test_backoff_without_retry_after_is_full_jitter_within_the_exponential_ceiling() -> None:
    script = Script(*[httpx.Response(503)] * 4, _valid())
    script.hook(max_attempts=5, max_retry_wait=3.0).upload("orders", ORDERS)
    ceilings = [1.0, 2.0, 3.0, 3.0]  # 1, 2, 4 -> capped at 3, 8 -> capped at 3
    assert len(script.sleeps) == 4
    assert all(0.0 <= wait <= ceiling for wait, ceiling in zip(script.sleeps, ceilings, strict=True))


def test_jitter_spreads_waits() -> None:
    policy = RetryPolicy(max_retry_wait=60.0)
    waits = {policy.wait_for(4, TransientFailure("HTTP 503", status=503)) for _ in range(50)}
    assert len(waits) > 40
    assert all(0.0 <= w <= 8.0 for w in waits)


def test_exhausted_attempts_raise_a_transient_error_naming_the_last_failure() -> None:
    script = Script(*[httpx.Response(503)] * 3)
    with pytest.raises(KlarTransientError, match=r"HTTP 503 after 3 attempt") as raised:
        script.hook(max_attempts=3).upload("orders", ORDERS)
    assert raised.value.http_status == 503
    assert len(script.requests) == 3
    assert len(script.sleeps) == 2
    assert "3 of 3 counted attempt(s) failed" in str(raised.value)
    # Only settings that exist are suggested.
    assert "raise max_attempts or max_retry_time" in str(raised.value)
    assert "max_retry_wait" not in str(raised.value)


def test_exhausted_network_errors_raise_a_transient_error() -> None:
    script = Script(*[httpx.ConnectError("connection refused")] * 2)
    with pytest.raises(KlarTransientError, match="ConnectError: connection refused"):
        script.hook(max_attempts=2).get_status("orders")


def test_each_retry_is_logged_as_a_warning(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}), _valid())
    caplog.set_level(logging.WARNING)
    script.hook().upload("orders", ORDERS)
    # Airflow 3 hooks log through structlog (printed), Airflow 2 through the stdlib (caught by caplog).
    captured = capsys.readouterr()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    lines += [line for line in (captured.out + captured.err).splitlines() if "warning" in line.lower()]
    expected = (
        "POST /07.2025/orders/json failed with HTTP 429 (attempt 1; 0 of 10 counted, 0 of 600 s used); "
        "retrying in 2.0 s."
    )
    assert any(expected in line for line in lines), lines


async def test_async_status_is_retried_with_the_async_sleep() -> None:
    script = Script(httpx.Response(502), httpx.Response(200, json={"total": "3"}))
    hook = script.hook()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    hook.retry_policy = dataclasses.replace(hook.retry_policy, async_sleep=fake_sleep)
    status = await hook.aget_status("orders")
    assert status.total == 3
    assert len(slept) == 1
    assert script.sleeps == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Tue, 14 Nov 2023 22:13:30 GMT", 10.0),
        ("Tue, 14 Nov 2023 22:13:10 GMT", 0.0),  # in the past
        ("Tue, 14 Nov 2023 22:13:30 -0000", 10.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc).timestamp() == NOW
    assert parse_retry_after(value, now=NOW) == expected


def test_policy_refuses_zero_attempts() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_test_connection_gives_up_quickly() -> None:
    answers: list[Callable[[], httpx.Response]] = [lambda: httpx.Response(503)] * 5
    script = Script(*(make() for make in answers))
    ok, message = script.hook().test_connection()
    assert not ok
    assert message.startswith("Klar at https://klar.test answered HTTP 503 on every attempt")
    assert len(script.requests) == 2  # not the task's five attempts: the UI button is waiting


def test_a_certificate_failure_is_final_and_says_how_to_trust_a_ca() -> None:
    script = Script(httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"))
    with pytest.raises(KlarConfigurationError, match="SSL_CERT_FILE"):
        script.hook().upload("orders", ORDERS)
    assert (len(script.requests), script.sleeps) == (1, [])


def test_other_transport_errors_are_final_request_errors() -> None:
    script = Script(httpx.UnsupportedProtocol("Request URL has an unsupported protocol"))
    with pytest.raises(KlarRequestError, match="Check the host of connection 'klar_default'"):
        script.hook().get_status("orders")
    assert script.sleeps == []


def _slow_down(seconds: int = 1) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": str(seconds)}, json={"message": "slow down"})


def test_rate_limit_answers_do_not_use_up_the_attempts() -> None:
    script = Script(*[_slow_down()] * 25, httpx.Response(503), _valid())
    result = script.hook(max_attempts=2).upload("orders", ORDERS)
    assert result.accepted_count == 2
    assert len(script.requests) == 27
    assert script.sleeps[:25] == [1.0] * 25


def test_a_503_with_retry_after_counts_as_rate_limiting() -> None:
    answers = [httpx.Response(503, headers={"Retry-After": "2"})] * 4
    script = Script(*answers, _valid())
    assert script.hook(max_attempts=1).upload("orders", ORDERS).accepted_count == 2
    assert script.sleeps == [2.0] * 4


def test_the_retry_time_bounds_honoured_waits() -> None:
    script = Script(*[_slow_down(30)] * 10)
    with pytest.raises(KlarTransientError) as raised:
        script.hook(max_retry_time=100.0).upload("orders", ORDERS)
    # 30 + 30 + 30 s waited; a fourth wait would end at 120 s, past the budget, so it is not started.
    assert script.sleeps == [30.0] * 3
    assert len(script.requests) == 4
    message = str(raised.value)
    assert "the next wait of 30 s would pass max_retry_time=100 s" in message
    assert "4 of them rate-limited" in message
    assert 'Klar said: {"message":"slow down"}' in message
    assert raised.value.http_status == 429


def test_the_retry_time_also_bounds_backoff_after_errors() -> None:
    script = Script(*[httpx.ConnectError("refused")] * 50)
    with pytest.raises(KlarTransientError, match="would pass max_retry_time=5 s"):
        script.hook(max_attempts=50, max_retry_wait=2.0, max_retry_time=5.0).upload("orders", ORDERS)
    assert sum(script.sleeps) <= 5.0
    assert len(script.requests) < 50


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number of at least 1; got 0."),
        ({"max_attempts": 2.5}, "max_attempts must be a whole number of at least 1; got 2.5."),
        ({"max_retry_wait": -1}, "max_retry_wait must be a number of seconds, not negative; got -1."),
        ({"max_retry_time": 0}, "max_retry_time must be a positive number of seconds; got 0."),
        ({"max_retry_time": float("inf")}, "max_retry_time must be a positive number of seconds; got inf."),
        ({"max_concurrency": 0}, "max_concurrency must be a whole number of at least 1; got 0."),
    ],
)
def test_the_hook_checks_its_retry_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        KlarHook(**kwargs)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_the_backoff_after_errors_does_not_grow_with_rate_limit_answers() -> None:
    slow_downs = [httpx.Response(429, headers={"Retry-After": "0"})] * 8
    script = Script(*slow_downs, httpx.Response(503), _valid())
    script.hook(max_retry_wait=60.0).upload("orders", ORDERS)
    # The 503 is the first error of its kind: its wait is drawn from [0, 1 s], not from [0, 60 s].
    assert script.sleeps[:8] == [0.0] * 8
    assert 0.0 <= script.sleeps[8] <= 1.0
