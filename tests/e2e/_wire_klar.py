"""A small, hostile Klar stand-in over real loopback HTTP, for the hook's wire behaviour.

Independent of the project's sandbox and of the provider's resource table: it is told which envelope
it expects (a bare array or ``{"items": [...]}``), the largest body it takes (413 above), a fault
storm (429 with ``Retry-After``, 503, dropped connections by request number) and whether to echo the
``Authorization`` header into its error answers, in one of Klar's error shapes.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "eyJhbGciOiJIUzI1NiJ9.wire-test-token.Zm9vYmFy-distinctive_9"

_PATH = re.compile(r"^/(?P<version>\d\d\.\d{4})/(?P<resource>[a-z-]+)/(?P<action>json|validate)$")
_ID_FIELD = {"orders": "id", "refunds": "id"}


@dataclass
class Storm:
    """Faults by the number of the request (1-based, all requests counted)."""

    slow_down_every: int = 0  # 429 with Retry-After
    retry_after: str = "1"
    unavailable_every: int = 0  # 503 without Retry-After
    drop_every: int = 0  # close the connection without answering


@dataclass
class Seen:
    """One request as the server saw it."""

    number: int
    path: str
    size: int
    envelope: str  # "array", "items" or "other"
    status: int = 0
    ids: list[str] = field(default_factory=list)


class WireKlar(ThreadingHTTPServer):
    """Stores records by id; answers as configured.

    :param envelope: What the cost resources expect: ``"array"`` or ``"items"``. Orders and refunds
        always take an array.
    :param max_body: The largest request body accepted; larger ones get 413.
    :param storm: Faults by request number.
    :param echo: An error shape whose texts echo the Authorization header: ``flat``, ``strings``,
        ``legacy``, ``partial``, ``unauthorized``, ``server-error``, ``redirect``, or ``None``.
    """

    daemon_threads = True

    def __init__(
        self,
        *,
        envelope: str = "items",
        max_body: int | None = None,
        storm: Storm | None = None,
        echo: str | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.envelope = envelope
        self.max_body = max_body
        self.storm = storm or Storm()
        self.echo = echo
        self.lock = threading.Lock()
        self.stored: dict[str, dict[str, Any]] = {}
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.in_flight_by_number: dict[int, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def connection(self) -> str:
        return json.dumps({"conn_type": "klar", "host": self.url, "password": TOKEN})

    def posts(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path != "GET"]


class _Handler(BaseHTTPRequestHandler):
    server: WireKlar
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @contextmanager
    def _counted(self) -> Iterator[None]:
        with self.server.lock:
            self.server.in_flight += 1
            self.server.most_in_flight = max(self.server.most_in_flight, self.server.in_flight)
        try:
            yield
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def do_GET(self) -> None:
        with self._counted():
            self._send(200, {"total": str(len(self.server.stored)), "lastBatchCount": "0"})

    def do_POST(self) -> None:
        with self._counted():
            self._post()

    def _post(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
        shape = "array" if isinstance(decoded, list) else "items" if isinstance(decoded, dict) else "other"
        with server.lock:
            seen = Seen(len(server.seen) + 1, path, len(body), shape)
            server.seen.append(seen)
            server.in_flight_by_number[seen.number] = server.in_flight
        storm, n = server.storm, seen.number
        if storm.slow_down_every and n % storm.slow_down_every == 0:
            seen.status = 429
            self._send(429, {"message": "Too Many Requests"}, {"Retry-After": storm.retry_after})
            return
        if storm.unavailable_every and n % storm.unavailable_every == 0:
            seen.status = 503
            self._send(503, {"message": "Service Unavailable"})
            return
        if storm.drop_every and n % storm.drop_every == 0:
            seen.status = -1
            self.close_connection = True  # no answer at all: the client sees the connection drop
            return
        auth = self.headers.get("Authorization") or ""
        if server.echo is not None:
            status, answer, headers = _echo(server.echo, auth, decoded)
            seen.status = status
            self._send(status, answer, headers)
            return
        if auth != f"Bearer {TOKEN}":
            seen.status = 401
            self._send(401, {"statusCode": 401, "message": "Unauthorized"})
            return
        if server.max_body is not None and len(body) > server.max_body:
            seen.status = 413
            self._send(413, b"<html><body><h1>413 Request Entity Too Large</h1></body></html>")
            return
        match = _PATH.match(path)
        if match is None:
            seen.status = 404
            self._send(404, {"message": f"Cannot POST {path}"})
            return
        resource = match["resource"]
        expected = "array" if resource in _ID_FIELD else server.envelope
        if shape != expected:
            # A whole-body refusal that names no record, as a NestJS pipe answers.
            seen.status = 400
            what = "an array" if expected == "array" else "an object with an items array"
            self._send(400, {"statusCode": 400, "message": f"body must be {what}", "error": "Bad Request"})
            return
        records = decoded if expected == "array" else decoded["items"]
        id_field = _ID_FIELD.get(resource, "orderId")
        errors = []
        for index, record in enumerate(records):
            if not isinstance(record.get(id_field), str):
                errors.append(
                    {
                        "id": record.get(id_field),
                        "key": f"{index}.{id_field}",
                        "message": f"{id_field} must be a string",
                        "value": record.get(id_field),
                    }
                )
        seen.ids = [str(record.get(id_field)) for record in records]
        if errors:
            seen.status = 400
            self._send(400, {"status": "INVALID", "errors": errors})
            return
        if match["action"] == "json":
            with server.lock:
                for record in records:
                    server.stored[record[id_field]] = record
        seen.status = 201
        self._send(201, {"status": "VALID"} if resource == "orders" else None)


def _echo(shape: str, auth: str, decoded: Any) -> tuple[int, Any, dict[str, str]]:
    """An error answer of ``shape`` that echoes ``auth`` (``Bearer <token>``) wherever it can."""
    token = auth.removeprefix("Bearer ")
    records = decoded if isinstance(decoded, list) else (decoded or {}).get("items") or []
    first = records[0].get("id") if records and isinstance(records[0], dict) else None
    if shape == "flat":
        return (
            400,
            {
                "status": "INVALID",
                "errors": [
                    {
                        "id": first,
                        "key": "0.customer.email",
                        "message": f"request by {auth} refused",
                        "value": {"headers": {"authorization": auth, "nested": [[{"deep": token}]]}},
                    },
                    {"key": "orderId", "message": f"no record here, {auth}", "value": token},
                ],
            },
            {},
        )
    if shape == "strings":
        return (
            400,
            {
                "status": "INVALID",
                "orderIds": [first, token],
                "errors": [f"orders.0.createdAt: ({auth}) has to be a unix timestamp! (isTimestamp)"],
            },
            {},
        )
    if shape == "legacy":
        return (
            400,
            [
                {
                    "target": {"authorization": auth},
                    "value": auth,
                    "property": "0",
                    "children": [
                        {
                            "property": "taxRate",
                            "value": {token: [token]},
                            "constraints": {"isNumber": f"taxRate must be a number ({auth})"},
                            "children": [],
                        }
                    ],
                }
            ],
            {},
        )
    if shape == "partial":
        return (
            207,
            {
                "status": "PARTIALLY_VALID",
                "errors": [{"id": first, "key": "0.id", "message": f"echo {auth}", "value": auth}],
                "failedOrderIds": [first],
                "successfulOrderIds": [r.get("id") for r in records[1:]],
            },
            {},
        )
    if shape == "unauthorized":
        return 401, {"statusCode": 401, "message": f"Unauthorized: {auth}"}, {}
    if shape == "server-error":
        return 500, f"Internal Server Error while handling Authorization: {auth}".encode(), {}
    if shape == "redirect":
        return 302, None, {"Location": f"https://elsewhere.example/login?token={token}"}
    raise ValueError(shape)


@contextmanager
def running(server: WireKlar) -> Iterator[WireKlar]:
    """Serve in a thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
