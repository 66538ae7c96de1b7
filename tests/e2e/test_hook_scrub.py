"""The token never comes back out of the hook, whatever Klar (or a proxy) echoes, over real HTTP.

The stand-in echoes ``Authorization: Bearer <token>`` in every error shape Klar has: flat errors with
the token in messages and nested values, string errors, the legacy class-validator tree, a 207 partial
answer, a 401 body, a 500 text body and a redirect's ``Location`` header.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_klar.hooks.klar import KlarHook
from airflow_provider_klar.results import OutcomeState
from tests.e2e._wire_klar import TOKEN, WireKlar, running

pytestmark = pytest.mark.e2e

ORDERS = [{"id": "ORD-1", "createdAt": 1_700_000_000}, {"id": "ORD-2", "createdAt": 1_700_000_001}]


@pytest.fixture
def seen(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[list[str]]:
    """Texts the test collects (exceptions, outcomes); at the end, the logs and output are added."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    yield texts
    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    texts += [str(r.msg) + repr(r.args) for r in caplog.records]
    leaks = [text for text in texts if TOKEN in text]
    assert not leaks, leaks


def upload(
    shape: str, monkeypatch: pytest.MonkeyPatch, **hook_kwargs: Any
) -> tuple[Any, BaseException | None]:
    with running(WireKlar(echo=shape)) as klar:
        monkeypatch.setenv("AIRFLOW_CONN_KLAR_DEFAULT", klar.connection())
        with KlarHook(**hook_kwargs) as hook:
            hook.retry_policy = dataclasses.replace(hook.retry_policy, initial_wait=0.0)
            try:
                return hook.upload("orders", ORDERS), None
            except Exception as err:  # the test looks at every exception's text
                return None, err


def everything(error: BaseException | None) -> str:
    """An exception's text, repr, args and chained causes."""
    parts = []
    while error is not None:
        parts += [str(error), repr(error), repr(error.args)]
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


def outcome_text(result: Any) -> str:
    return repr(result) + repr([[e.to_dict() for e in o.errors] for o in result.outcomes])


def test_flat_errors_echoing_the_token_in_messages_and_nested_values(
    monkeypatch: pytest.MonkeyPatch, seen: list[str]
) -> None:
    result, error = upload("flat", monkeypatch)
    assert error is None
    seen.append(outcome_text(result))
    rejected = result.outcomes[0]
    assert rejected.state is OutcomeState.REJECTED
    assert rejected.errors[0].message == "request by Bearer *** refused"
    assert rejected.errors[0].value == {
        "headers": {"authorization": "Bearer ***", "nested": [[{"deep": "***"}]]}
    }
    assert result.outcomes[1].state is OutcomeState.NOT_STORED


def test_string_errors_and_failed_ids_echoing_the_token(
    monkeypatch: pytest.MonkeyPatch, seen: list[str]
) -> None:
    result, error = upload("strings", monkeypatch)
    assert error is None
    seen.append(outcome_text(result))
    assert result.outcomes[0].errors[0].value == "Bearer ***"


def test_the_legacy_tree_echoing_the_token_in_keys_and_values(
    monkeypatch: pytest.MonkeyPatch, seen: list[str]
) -> None:
    result, error = upload("legacy", monkeypatch)
    assert error is None
    seen.append(outcome_text(result))
    reason = result.outcomes[0].errors[0]
    assert reason.path == "taxRate"
    assert reason.message == "taxRate must be a number (Bearer ***)"
    assert reason.value == {"***": ["***"]}


def test_a_partial_answer_echoing_the_token(monkeypatch: pytest.MonkeyPatch, seen: list[str]) -> None:
    result, error = upload("partial", monkeypatch)
    assert error is None
    seen.append(outcome_text(result))
    assert [o.state for o in result.outcomes] == [OutcomeState.REJECTED, OutcomeState.ACCEPTED]
    assert result.outcomes[0].errors[0].value == "Bearer ***"


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("unauthorized", "Unauthorized: Bearer ***"),
        ("server-error", "Internal Server Error while handling Authorization: Bearer ***"),
        ("redirect", "token=***"),
    ],
)
def test_whole_request_errors_echoing_the_token(
    shape: str, expected: str, monkeypatch: pytest.MonkeyPatch, seen: list[str]
) -> None:
    result, error = upload(shape, monkeypatch, max_attempts=2)
    assert result is None
    text = everything(error)
    seen.append(text)
    assert expected in text
