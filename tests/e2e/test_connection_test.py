"""``KlarHook.test_connection`` (the UI's Test button) over real loopback HTTP, as Airflow's UI calls it.

The UI tests a copy of the connection stored under a random temporary id (``QPUQG8d7``): the messages
must speak of "this connection", never of that id, and give advice that fits what failed.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

import pytest

from airflow_provider_klar.hooks.klar import KlarHook

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

#: Like the id Airflow's ``POST /connections/test`` gives its temporary copy of the connection.
TEMP_ID = "QPUQG8d7"


def _as_the_ui_would(monkeypatch: pytest.MonkeyPatch, host: str, password: str | None) -> KlarHook:
    conn = {"conn_type": "klar", "host": host, **({"password": password} if password else {})}
    monkeypatch.setenv(f"AIRFLOW_CONN_{TEMP_ID.upper()}", json.dumps(conn))
    return KlarHook(TEMP_ID)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_speaks_of_this_connection(message: str) -> None:
    assert TEMP_ID not in message
    assert "max_attempts" not in message
    assert "max_wait" not in message


def test_success_counts_the_orders(monkeypatch: pytest.MonkeyPatch, klar_sandbox: SandboxServer) -> None:
    hook = _as_the_ui_would(monkeypatch, klar_sandbox.url, klar_sandbox.token)
    assert hook.test_connection() == (True, "Connected: 0 orders received so far")


def test_a_refused_connection_points_at_the_url_and_port_not_at_rate_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _closed_port()
    ok, message = _as_the_ui_would(monkeypatch, f"http://127.0.0.1:{port}", "some-token").test_connection()
    assert not ok
    assert message.startswith(f"Cannot reach http://127.0.0.1:{port} (ConnectError: "), message
    assert "Connection refused" in message
    assert "Check the Base URL and Port of this connection" in message
    assert "rate" not in message
    _assert_speaks_of_this_connection(message)


def test_a_bad_token_names_this_connection(
    monkeypatch: pytest.MonkeyPatch, klar_sandbox: SandboxServer
) -> None:
    ok, message = _as_the_ui_would(monkeypatch, klar_sandbox.url, "not-the-token").test_connection()
    assert not ok
    assert message.startswith("Bad token: ")
    assert "check the token of this connection" in message
    assert "not-the-token" not in message
    _assert_speaks_of_this_connection(message)


def test_a_missing_token_names_this_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = _as_the_ui_would(monkeypatch, "https://open-api.getklar.com", None).test_connection()
    assert (ok, message.split(".")[0]) == (False, "This connection has no API token")
    _assert_speaks_of_this_connection(message)


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (429, "is limiting the rate (HTTP 429 on every attempt): test again in a minute."),
        (503, "answered HTTP 503 on every attempt: a problem on Klar's side; test again later."),
    ],
)
def test_overload_advice_fits_the_answer(
    monkeypatch: pytest.MonkeyPatch, klar_sandbox: SandboxServer, status: int, advice: str
) -> None:
    # Rate-limited answers do not use up attempts, only the test's time budget (15 s): answer 429 until
    # then, asking for waits of 5 s (the test's longest) so that only a few requests are sent.
    klar_sandbox.set_faults(fail_next=[status] * 10, retry_after=5)
    ok, message = _as_the_ui_would(monkeypatch, klar_sandbox.url, klar_sandbox.token).test_connection()
    assert not ok
    assert message == f"Klar at {klar_sandbox.url} {advice}"
