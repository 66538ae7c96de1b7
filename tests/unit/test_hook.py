"""KlarHook end to end over a mock transport: requests it sends, results and errors it returns."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import redact

from airflow_provider_klar import __version__
from airflow_provider_klar.exceptions import (
    KlarAuthError,
    KlarConfigurationError,
    KlarError,
    KlarNotFoundError,
    KlarResponseError,
    KlarTransientError,
)
from airflow_provider_klar.hooks.klar import KlarHook
from airflow_provider_klar.results import OutcomeState

TOKEN = "tok-unit-Zq81x"
STATUS = {"total": "2", "lastBatchCount": "1", "lastSuccess": "2023-03-14T09:06:42.281Z", "lastFailure": None}
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT",
        json.dumps({"conn_type": "klar", "host": "https://klar.test", "password": TOKEN}),
    )


class Recorder:
    """Answers every request with ``handler`` and keeps the requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return self.handler(request)


def make_hook(handler: Handler, **kwargs: Any) -> tuple[KlarHook, Recorder]:
    recorder = Recorder(handler)
    hook = KlarHook(**kwargs)
    hook._transport = httpx.MockTransport(recorder)
    return hook, recorder


def created(_: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json={"status": "VALID"})


def test_upload_sends_one_post_with_klars_headers_and_flags() -> None:
    hook, sent = make_hook(created)
    result = hook.upload("orders", [{"id": "A", "createdAt": 1}, {"id": "B"}])
    assert [o.state for o in result.outcomes] == [OutcomeState.ACCEPTED] * 2
    (request,) = sent.requests
    assert request.method == "POST"
    assert request.url.path == "/07.2025/orders/json"
    assert dict(request.url.params) == {"failedOrderIds": "true", "newErrors": "true"}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == f"airflow-provider-klar/{__version__}"
    assert "Expect" not in request.headers
    assert json.loads(request.content) == [{"id": "A", "createdAt": 1}, {"id": "B"}]


def test_validate_goes_to_validate_and_wraps_where_klar_wraps() -> None:
    hook, sent = make_hook(lambda _: httpx.Response(202, json={"status": "VALID"}))
    result = hook.validate("cogs", [{"orderId": "O-1", "sku": "S", "productCogs": 1.5}])
    assert result.mode == "validate"
    assert result.outcomes[0].id == "O-1"  # the id field of cogs is orderId
    assert sent.requests[0].url.path == "/12.2022/cogs/validate"
    assert dict(sent.requests[0].url.params) == {"newErrors": "true"}
    assert json.loads(sent.requests[0].content) == {
        "items": [{"orderId": "O-1", "sku": "S", "productCogs": 1.5}]
    }


def test_encoded_records_are_joined_as_given() -> None:
    hook, sent = make_hook(created)
    parts = [b'{"id":"A","x":1.10}', b'{"id":"B"}']
    hook.upload("refunds", [{"id": "A"}, {"id": "B"}], encoded=parts)
    assert sent.requests[0].content == b'[{"id":"A","x":1.10},{"id":"B"}]'
    hook.upload("logistics-costs", [{"orderId": "A"}], encoded=[b'{"orderId":"A"}'])
    assert sent.requests[1].content == b'{"items":[{"orderId":"A"}]}'


def test_api_version_argument_reaches_the_path() -> None:
    hook, sent = make_hook(created, api_version="12.2022")
    assert hook.upload("orders", [{"id": "A"}]).api_version == "12.2022"
    assert sent.requests[0].url.path == "/12.2022/orders/json"


@pytest.mark.parametrize(
    ("records", "encoded", "match"),
    [
        ([{"id": str(i)} for i in range(1001)], None, "at most 1000"),
        ([], None, "at least one record"),
        ([{"id": "A"}], [b"{}", b"{}"], "must match"),
        ([{"id": "A"}, {"id": "B", "x": {1, 2}}], None, r"Record 1 \(id B\)"),
        ([{"id": "A", "x": float("nan")}], None, r"Record 0 \(id A\)"),
    ],
)
def test_bad_batches_fail_before_any_request(
    records: list[dict[str, Any]], encoded: list[bytes] | None, match: str
) -> None:
    hook, sent = make_hook(created)
    with pytest.raises(ValueError, match=match):
        hook.upload("orders", records, encoded=encoded)
    assert sent.requests == []


def test_exactly_1000_records_are_one_request() -> None:
    hook, sent = make_hook(created)
    assert hook.upload("orders", [{"id": str(i)} for i in range(1000)]).accepted_count == 1000
    assert len(sent.requests) == 1


def test_transaction_costs_cannot_be_validated_remotely() -> None:
    hook, sent = make_hook(created)
    with pytest.raises(KlarConfigurationError, match="no /validate endpoint"):
        hook.validate("transaction-costs", [{"orderId": "A", "transactionCosts": 1}])
    with pytest.raises(KlarConfigurationError, match="Unknown Klar resource"):
        hook.upload("order", [{"id": "A"}])
    assert sent.requests == []


def test_a_rejected_batch_returns_outcomes_instead_of_raising() -> None:
    body = {"status": "INVALID", "errors": [{"id": "B", "key": "1.createdAt", "message": "m", "value": 0}]}
    hook, _ = make_hook(lambda _: httpx.Response(400, json=body))
    result = hook.upload("orders", [{"id": "A"}, {"id": "B"}])
    assert [o.state for o in result.outcomes] == [OutcomeState.NOT_STORED, OutcomeState.REJECTED]


def test_status_counts_are_ints_and_times_aware() -> None:
    hook, sent = make_hook(lambda _: httpx.Response(200, json=STATUS))
    status = hook.get_status("orders")
    assert sent.requests[0].url.path == "/orders/status"
    assert sent.requests[0].method == "GET"
    assert (status.total, status.last_batch_count) == (2, 1)
    assert status.last_success == datetime(2023, 3, 14, 9, 6, 42, 281000, tzinfo=timezone.utc)
    assert status.last_failure is None


def test_status_tolerates_missing_fields() -> None:
    hook, _ = make_hook(lambda _: httpx.Response(200, json={"total": 5}))
    status = hook.get_status("logistics-costs")
    assert (status.resource, status.total, status.last_batch_count, status.last_success) == (
        "logistics-costs", 5, 0, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    "raw", [b"[1, 2]", b"<html></html>", b'{"total": "many"}', b'{"lastSuccess": "yesterday"}']
)
def test_an_unreadable_status_is_a_response_error(raw: bytes) -> None:
    hook, _ = make_hook(lambda _: httpx.Response(200, content=raw))
    with pytest.raises(KlarResponseError):
        hook.get_status("orders")


async def test_async_status() -> None:
    hook, sent = make_hook(lambda _: httpx.Response(200, json=STATUS))
    status = await hook.aget_status("orders")
    assert status.total == 2
    assert status.last_success is not None
    assert status.last_success.tzinfo is not None
    assert sent.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_async_status_errors_like_the_sync_one() -> None:
    hook, _ = make_hook(lambda _: httpx.Response(401, json={"message": "Unauthorized"}))
    with pytest.raises(KlarAuthError, match="check the token of connection 'klar_default'"):
        await hook.aget_status("orders")


@pytest.mark.parametrize(
    ("handler", "ok", "start"),
    [
        (lambda _: httpx.Response(200, json=STATUS), True, "Connected: 2 orders received so far"),
        (lambda _: httpx.Response(401, json={"message": "invalid token"}), False, "Bad token"),
        (lambda _: httpx.Response(403), False, "Bad token"),
        (lambda _: httpx.Response(404), False, "Wrong URL or version"),
        (lambda _: httpx.Response(200, content=b"<html/>"), False, "Klar's answer"),
        (
            lambda _: (_ for _ in ()).throw(RuntimeError("boom")),
            False,
            "Unexpected error: RuntimeError: boom",
        ),
    ],
)
def test_test_connection(handler: Handler, ok: bool, start: str) -> None:
    hook, _ = make_hook(handler)
    result = hook.test_connection()
    assert result[0] is ok
    assert result[1].startswith(start), result[1]


def test_test_connection_reports_a_configuration_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT", json.dumps({"conn_type": "klar", "host": "http://klar.test"})
    )
    ok, message = KlarHook().test_connection()
    assert not ok
    assert "no API token" in message


def test_one_client_serves_many_threads() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)
        failed = [r["id"] for r in records if r["id"].endswith("7")]
        body = {"status": "PARTIALLY_VALID", "failedOrderIds": failed} if failed else {"status": "VALID"}
        return httpx.Response(207 if failed else 201, json=body)

    hook, sent = make_hook(handler)
    batches = [[{"id": f"{b}-{i}"} for i in range(10)] for b in range(24)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda batch: hook.upload("orders", batch), batches))
    assert len(sent.requests) == 24
    for batch, result in zip(batches, results, strict=True):
        assert [o.id for o in result.outcomes] == [r["id"] for r in batch]
        assert result.rejected_ids == [f"{batch[0]['id'].split('-')[0]}-7"]
    clients = {id(hook.get_conn()) for _ in range(3)}
    assert len(clients) == 1


def test_client_pools_connections_and_verifies_tls() -> None:
    client = KlarHook().get_conn()
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections >= 8
    assert pool._ssl_context.verify_mode is ssl.CERT_REQUIRED
    assert pool._ssl_context.check_hostname
    assert client.follow_redirects is False


def test_close_and_context_manager() -> None:
    with KlarHook() as hook:
        first = hook.get_conn()
    assert first.is_closed
    second = hook.get_conn()
    assert second is not first
    assert not second.is_closed
    hook.close()


def test_the_token_appears_in_no_repr_log_or_error(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(401, text=f"bad {TOKEN}")]
    )
    hook, sent = make_hook(lambda _: next(answers))
    seen: list[str] = [repr(hook), repr(hook.get_conn()), repr(hook.settings), repr(hook.get_conn().auth)]
    with pytest.raises(KlarAuthError) as raised:
        hook.upload("orders", [{"id": "A"}])
    seen += [str(raised.value), repr(raised.value)]
    bad, _ = make_hook(lambda _: httpx.Response(403, text=TOKEN))
    seen.append(bad.test_connection()[1])
    captured = capsys.readouterr()
    seen += [caplog.text, captured.out, captured.err]
    assert sent.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"  # it was used...
    assert all(TOKEN not in text for text in seen)  # ...and shown nowhere
    assert "check the token" in str(raised.value)
    assert TOKEN not in redact(f"x {TOKEN} y")  # registered with Airflow's secrets masker


def test_not_found_names_the_url_and_version() -> None:
    hook, _ = make_hook(lambda _: httpx.Response(404, text="Cannot POST"))
    with pytest.raises(KlarNotFoundError, match=r"https://klar.test: check the base URL and API version"):
        hook.upload("orders", [{"id": "A"}])


def test_a_request_on_the_wire_when_the_hook_closes_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A real loopback server reads the request and answers nothing until the hook is closed (what
    # on_kill does to a task terminated mid-upload), then drops the connection: the request fails
    # because the task is stopping, which is no network failure to retry or warn about.
    listener = socket.create_server(("127.0.0.1", 0))
    received, closed = threading.Event(), threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            received.set()
            closed.wait(30)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT",
        json.dumps(
            {"conn_type": "klar", "host": f"http://127.0.0.1:{listener.getsockname()[1]}", "password": TOKEN}
        ),
    )
    caplog.set_level(logging.WARNING)
    hook = KlarHook(timeout=60)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(hook.upload, "orders", [{"id": "A-1"}])
        assert received.wait(30), "the request never reached the server"
        hook.close()
        closed.set()
        with pytest.raises(KlarError, match="cut short: the Klar hook was closed") as raised:
            future.result(timeout=30)
    server.join(30)
    listener.close()
    assert not isinstance(raised.value, KlarTransientError)
    assert "retrying" not in caplog.text
