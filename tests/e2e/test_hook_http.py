"""KlarHook over real loopback HTTP against a small, independent Klar stand-in written here.

The stand-in is deliberately not the project's sandbox: it speaks the contract of ``klar-api.md``
directly (status counters as strings, 207 partial answers, 401 for a wrong token) and can be told to
answer 429 with ``Retry-After`` or 503 before answering for real.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_klar.hooks.klar import KlarHook
from airflow_provider_klar.results import OutcomeState

pytestmark = pytest.mark.e2e

TOKEN = "e2e-tok-9f3Kq7Lw-distinctive"


class FakeKlar(ThreadingHTTPServer):
    """Stores orders by id; ``faults`` is a queue of (status, headers) answered before real work."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.orders: dict[str, dict[str, Any]] = {}
        self.faults: list[tuple[int, dict[str, str]]] = []
        self.log: list[dict[str, Any]] = []
        self.total = 0
        self.last_batch = 0
        self.last_success: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeKlar
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> tuple[bool, bytes]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.log.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "at": time.monotonic(),
                    "expect": self.headers.get("Expect"),
                    "user_agent": self.headers.get("User-Agent"),
                    "content_type": self.headers.get("Content-Type"),
                }
            )
            fault = self.server.faults.pop(0) if self.server.faults else None
        if fault is not None:
            self._send(fault[0], {"message": "slow down"}, fault[1])
            return False, body
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"statusCode": 401, "message": "Unauthorized"})
            return False, body
        return True, body

    def do_GET(self) -> None:
        go_on, _ = self._record()
        if not go_on:
            return
        if urlsplit(self.path).path != "/orders/status":
            self._send(404, {"message": f"Cannot GET {self.path}"})
            return
        with self.server.lock:
            status = {"total": str(self.server.total), "lastBatchCount": str(self.server.last_batch)}
            if self.server.last_success:
                status["lastSuccess"] = self.server.last_success
            status["lastFailure"] = None
        self._send(200, status)

    def do_POST(self) -> None:
        go_on, body = self._record()
        if not go_on:
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path != "/07.2025/orders/json" or query.get("failedOrderIds") != ["true"]:
            self._send(404, {"message": f"Cannot POST {parts.path}"})
            return
        orders = json.loads(body)
        errors, failed, stored = [], [], []
        for index, order in enumerate(orders):
            if isinstance(order.get("createdAt"), int):
                stored.append(order["id"])
            else:
                failed.append(order["id"])
                errors.append(
                    {
                        "id": order["id"],
                        "key": f"{index}.createdAt",
                        "message": "createdAt must be a unix timestamp",
                        "value": order.get("createdAt"),
                    }
                )
        with self.server.lock:
            for order in orders:
                if order["id"] in stored:
                    self.server.orders[order["id"]] = order
            self.server.total += len(orders)
            self.server.last_batch = len(orders)
            self.server.last_success = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        if failed:
            self._send(
                207,
                {
                    "status": "PARTIALLY_VALID",
                    "errors": errors,
                    "failedOrderIds": failed,
                    "successfulOrderIds": stored,
                },
            )
        else:
            self._send(201, {"status": "VALID"})


@pytest.fixture
def klar(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKlar]:
    server = FakeKlar()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT",
        json.dumps({"conn_type": "klar", "host": server.url, "password": TOKEN}),
    )
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def orders(n: int, start: int = 0, *, bad: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"id": f"ORD-{i}", "createdAt": "yesterday" if i in bad else 1_700_000_000 + i, "lineItems": []}
        for i in range(start, start + n)
    ]


@pytest.fixture
def output(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[list[str]]:
    """Everything the test printed or logged; checked for the token at the end."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    yield texts
    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    assert all(TOKEN not in text for text in texts)


def test_uploads_go_through_429_and_503(klar: FakeKlar, output: list[str]) -> None:
    klar.faults = [(429, {"Retry-After": "1"}), (503, {})]
    with KlarHook() as hook:
        result = hook.upload("orders", orders(3))
    assert [o.state for o in result.outcomes] == [OutcomeState.ACCEPTED] * 3
    assert result.status_code == 201
    assert sorted(klar.orders) == ["ORD-0", "ORD-1", "ORD-2"]
    posts = [entry for entry in klar.log if entry["method"] == "POST"]
    assert len(posts) == 3
    assert posts[1]["at"] - posts[0]["at"] >= 0.9  # Retry-After: 1 was honoured
    assert all(p["expect"] is None for p in posts)
    assert all(p["content_type"] == "application/json" for p in posts)
    assert posts[0]["user_agent"].startswith("airflow-provider-klar/")
    output.append(repr(hook))


def test_a_partial_answer_names_each_rejected_id_and_is_not_retried(
    klar: FakeKlar, output: list[str]
) -> None:
    with KlarHook() as hook:
        result = hook.upload("orders", orders(5, bad=(1, 3)))
    assert result.status_code == 207
    assert result.rejected_ids == ["ORD-1", "ORD-3"]
    assert [o.index for o in result.rejected] == [1, 3]
    assert result.rejected[0].errors[0].path == "createdAt"
    assert result.rejected[0].errors[0].value == "yesterday"
    assert result.accepted_count == 3
    assert len([e for e in klar.log if e["method"] == "POST"]) == 1
    assert sorted(klar.orders) == ["ORD-0", "ORD-2", "ORD-4"]


def test_status_and_connection_test(klar: FakeKlar, output: list[str]) -> None:
    with KlarHook() as hook:
        hook.upload("orders", orders(4))
        status = hook.get_status("orders")
        ok, message = hook.test_connection()
    assert (status.total, status.last_batch_count) == (4, 4)
    assert isinstance(status.total, int)
    assert status.last_success is not None
    assert status.last_success.tzinfo is not None
    assert status.last_failure is None
    assert (ok, message) == (True, "Connected: 4 orders received so far")


async def test_async_status_over_http(klar: FakeKlar, output: list[str]) -> None:
    klar.faults = [(503, {"Retry-After": "0"})]
    status = await KlarHook().aget_status("orders")
    assert status.total == 0
    assert status.last_success is None
    assert len(klar.log) == 2


def test_a_bad_token_fails_the_connection_test_with_a_message(
    klar: FakeKlar, output: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_WRONG",
        json.dumps({"conn_type": "klar", "host": klar.url, "password": TOKEN[::-1]}),
    )
    ok, message = KlarHook("klar_wrong").test_connection()
    assert not ok
    assert message.startswith("Bad token")
    assert "check the token of this connection" in message
    assert TOKEN[::-1] not in message
    output.append(message)


def test_connection_given_as_an_airflow_uri_with_the_scheme_in_schema(
    klar: FakeKlar, output: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = klar.server_address[1]
    monkeypatch.setenv("AIRFLOW_CONN_KLAR_URI", f"klar://:{TOKEN}@127.0.0.1:{port}/http")
    hook = KlarHook("klar_uri")
    assert hook.base_url == klar.url
    assert hook.test_connection()[0]


def test_one_hook_uploads_from_eight_threads(klar: FakeKlar, output: list[str]) -> None:
    with KlarHook() as hook, ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda b: hook.upload("orders", orders(50, start=b * 50)), range(16)))
    assert sum(r.accepted_count for r in results) == 800
    assert len(klar.orders) == 800
