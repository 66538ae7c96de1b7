"""End-to-end tests of the sandbox's switches for a hostile Klar, over real loopback HTTP.

Envelope per cost resource, a body size limit, echoing the Authorization header, jittered latency, and
the request log written before the answer leaves.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from airflow_provider_klar.sandbox import SandboxClient, SandboxServer
from airflow_provider_klar.sandbox.cli import build_parser, envelope_knob
from airflow_provider_klar.sandbox.fake_data import fake_orders, fake_records
from airflow_provider_klar.sandbox.faults import SWITCHABLE

pytestmark = pytest.mark.e2e

PATHS = {
    "cogs": "/12.2022/cogs/json",
    "logistics-costs": "/04.2024/logistics-costs/json",
    "transaction-costs": "/06.2024/transaction-costs/json",
}


@pytest.fixture
def http(klar_sandbox: SandboxServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {klar_sandbox.token}"}
    with httpx.Client(base_url=klar_sandbox.url, headers=headers, timeout=30) as client:
        yield client


def _assert_names_no_record(body: Any) -> None:
    # A whole-body refusal: Klar's framework error, no per-record "errors", ids or keys.
    assert isinstance(body, dict)
    assert set(body) == {"statusCode", "message", "error"}
    assert "ORD-" not in body["message"]


@pytest.mark.parametrize("resource", SWITCHABLE)
@pytest.mark.parametrize("envelope", ["items", "array"])
def test_envelope_switch_takes_one_shape_and_refuses_the_other(
    http: httpx.Client, klar_sandbox: SandboxServer, resource: str, envelope: str
) -> None:
    klar_sandbox.set_faults(envelope={resource: envelope})
    records = list(fake_records(resource, 3))
    right: Any = records if envelope == "array" else {"items": records}
    wrong: Any = {"items": records} if envelope == "array" else records

    refused = http.post(PATHS[resource], json=wrong)
    assert refused.status_code == 400
    _assert_names_no_record(refused.json())
    assert klar_sandbox.count(resource) == 0

    taken = http.post(PATHS[resource], json=right)
    assert taken.status_code == 201, taken.text
    assert klar_sandbox.count(resource) == len({json.dumps(r, sort_keys=True) for r in records})


def test_envelope_switch_for_one_resource_leaves_the_others_alone(
    http: httpx.Client, klar_sandbox: SandboxServer
) -> None:
    klar_sandbox.set_faults(envelope={"cogs": "array"})
    cogs = list(fake_records("cogs", 2))
    costs = list(fake_records("logistics-costs", 2))
    assert http.post("/12.2022/cogs/json", json=cogs).status_code == 201
    assert http.post("/12.2022/cogs/validate", json=cogs).status_code == 202  # /validate too
    assert http.post("/04.2024/logistics-costs/json", json={"items": costs}).status_code == 201
    assert http.post("/04.2024/logistics-costs/json", json=costs).status_code == 400
    snapshot = http.get("/_sandbox/faults").json()["envelope"]
    assert snapshot == {"cogs": "array", "logistics-costs": "items", "transaction-costs": "items"}


def test_envelope_switch_refuses_resources_whose_shape_is_certain(klar_sandbox: SandboxServer) -> None:
    with pytest.raises(ValueError, match="cannot be switched for 'orders'"):
        klar_sandbox.set_faults(envelope={"orders": "items"})
    with pytest.raises(ValueError, match="not one of: array, items"):
        klar_sandbox.set_faults(envelope="list")


@pytest.mark.klar_sandbox(envelope="array", max_body_bytes=5000)
def test_marker_sets_switches_before_the_test(http: httpx.Client) -> None:
    faults = http.get("/_sandbox/faults").json()
    assert faults["envelope"] == dict.fromkeys(SWITCHABLE, "array")
    assert faults["max_body_bytes"] == 5000


def test_switches_are_reset_between_tests(http: httpx.Client) -> None:
    faults = http.get("/_sandbox/faults").json()
    assert faults["envelope"] == dict.fromkeys(SWITCHABLE, "items")
    assert (faults["max_body_bytes"], faults["echo_auth"], faults["latency_jitter_ms"]) == (None, False, 0)


def test_max_body_bytes_answers_413_and_stores_nothing(
    http: httpx.Client, klar_sandbox: SandboxServer
) -> None:
    orders = list(fake_orders(10))
    size = len(json.dumps(orders).encode())
    klar_sandbox.set_faults(max_body_bytes=size - 1)
    refused = http.post("/07.2025/orders/json", content=json.dumps(orders).encode())
    assert refused.status_code == 413
    assert refused.json()["message"] == f"Request body of {size} bytes exceeds the limit of {size - 1} bytes."
    assert klar_sandbox.count("orders") == 0
    # Like a proxy in front of Klar: the request never reached Klar, so no status counter moved.
    assert klar_sandbox.status("orders")["lastFailure"] is None
    half = http.post("/07.2025/orders/json", content=json.dumps(orders[:5]).encode())
    assert half.status_code == 201
    assert klar_sandbox.count("orders") == 5
    assert [e["status"] for e in klar_sandbox.requests()] == [413, 201]


def test_echo_auth_repeats_the_header_in_every_error_text(
    http: httpx.Client, klar_sandbox: SandboxServer
) -> None:
    klar_sandbox.set_faults(echo_auth=True)
    token = klar_sandbox.token
    orders = list(fake_orders(2))
    orders[1]["createdAt"] = "yesterday"
    flags = {"failedOrderIds": "true", "newErrors": "true"}

    partial = http.post("/07.2025/orders/json", params=flags, json=orders)
    assert partial.status_code == 207
    assert f"Bearer {token}" in partial.json()["errors"][0]["message"]
    assert partial.json()["errors"][0]["key"] == "1.createdAt"  # only texts change, not keys or ids
    assert partial.headers["X-Echo-Authorization"] == f"Bearer {token}"

    strings = http.post("/07.2025/orders/validate", params={"failedOrderIds": "true"}, json=orders)
    assert f"Bearer {token}" in strings.json()["errors"][0]

    legacy = http.post("/07.2025/orders/validate", json=orders)
    assert f"Bearer {token}" in json.dumps(legacy.json()[0]["children"][0]["constraints"])

    whole = http.post("/12.2022/cogs/json", json=[])
    assert whole.status_code == 400
    assert f"Bearer {token}" in whole.json()["message"]

    unauthorized = httpx.get(f"{klar_sandbox.url}/orders/status", headers={"Authorization": "Bearer guessed"})
    assert unauthorized.status_code == 401
    assert "Bearer guessed" in unauthorized.json()["message"]

    # An injected fault comes as a proxy's plain-text page: not JSON, token included.
    klar_sandbox.set_faults(fail_next=[502])
    page = http.post("/07.2025/orders/json", json=orders[:1])
    assert page.status_code == 502
    assert page.headers["content-type"].startswith("text/plain")
    assert f"Request Authorization: Bearer {token}" in page.text

    ok = http.post("/07.2025/orders/json", json=orders[:1])
    assert ok.status_code == 201
    assert "X-Echo-Authorization" not in ok.headers


def test_jittered_latency_answers_concurrent_requests_out_of_order(klar_sandbox: SandboxServer) -> None:
    klar_sandbox.set_faults(latency_jitter_ms=400, seed=7)
    headers = {"Authorization": f"Bearer {klar_sandbox.token}"}
    arrived = threading.Barrier(12)
    finished: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> None:
        with httpx.Client(base_url=klar_sandbox.url, headers=headers, timeout=30) as client:
            arrived.wait()
            response = client.post("/07.2025/orders/json", json=list(fake_orders(1, start=n)))
        assert response.status_code == 201
        with lock:
            finished.append(n)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(call, range(12)))
    log = klar_sandbox.requests()
    assert all(e["state"] == "answered" for e in log)
    # The drawn delays differ, so the answers do not come back in the order the requests arrived:
    # twelve uniform draws in arrival order happen with probability 1/12!.
    durations = [e["duration_ms"] for e in log]
    assert durations != sorted(durations)
    assert max(durations) - min(durations) > 10


def test_the_log_holds_a_request_before_it_is_answered() -> None:
    # Its own server: the held request must not outlive the test into another one's faults.
    with SandboxServer(latency_ms=60_000) as klar:
        headers = {"Authorization": f"Bearer {klar.token}"}
        outcome: list[BaseException] = []

        def held() -> None:
            try:
                httpx.get(f"{klar.url}/orders/status", headers=headers, timeout=120)
            except httpx.HTTPError as exc:  # the server stops under it
                outcome.append(exc)

        thread = threading.Thread(target=held, daemon=True)
        thread.start()
        (entry,) = klar.wait_for_requests(1, include_get=True, finished=False)
        assert (entry["path"], entry["state"], entry["status"]) == ("/orders/status", "received", None)
        # The held request does not block the others.
        klar.set_faults(latency_ms=0)
        assert httpx.get(f"{klar.url}/orders/status", headers=headers).status_code == 200
        first, second = klar.requests(include_get=True)
        assert (first["state"], second["state"], second["status"]) == ("received", "answered", 200)
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_an_answered_request_is_complete_in_the_log(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    # The client has its answer only after the entry is final: no waiting needed to read it.
    for n in range(20):
        response = http.post("/07.2025/orders/json", json=list(fake_orders(2, start=2 * n)))
        entry = klar_sandbox.requests()[-1]
        assert (entry["status"], entry["records"], entry["state"]) == (response.status_code, 2, "answered")
        assert entry["bytes"] == len(response.request.content)
        assert entry["duration_ms"] is not None


def test_wait_for_requests_over_http_and_in_process(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    klar_sandbox.set_faults(fail_next=["drop"])
    with pytest.raises(httpx.TransportError):
        http.post("/07.2025/orders/json", json=list(fake_orders(1)))
    http.post("/07.2025/orders/json", json=list(fake_orders(1)))
    with SandboxClient(klar_sandbox.url) as client:
        log = client.wait_for_requests(2, timeout=10)
        assert [(e["state"], e["status"]) for e in log] == [("dropped", None), ("answered", 201)]
        with pytest.raises(TimeoutError, match="has 2 entries"):
            client.wait_for_requests(3, timeout=0)
    assert klar_sandbox.wait_for_requests(lambda log: log[-1]["status"] == 201)[-1]["records"] == 1


def test_stored_reports_the_current_version_of_an_id(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    order = next(iter(fake_orders(1)))
    for status in ("pending", "paid", "refunded"):
        version = {**order, "financialStatus": status}
        assert http.post("/07.2025/orders/json", json=[version]).status_code == 201
    info = klar_sandbox.stored("orders", order["id"])
    assert info is not None
    current = (info["body"]["financialStatus"], info["writes"], info["api_version"])
    assert current == ("refunded", 3, "07.2025")
    with SandboxClient(klar_sandbox.url) as client:
        assert client.stored("orders", order["id"]) == info
        assert client.stored("orders", "nope") is None
    assert klar_sandbox.stored("orders", "nope") is None


def test_cli_options_for_the_switches() -> None:
    args = build_parser().parse_args(
        ["--envelope", "array", "--envelope", "cogs=items", "--max-body-bytes", "900", "--echo-auth"]
    )
    knob = envelope_knob(args.envelope)
    assert knob == {"cogs": "items", "logistics-costs": "array", "transaction-costs": "array"}
    assert (args.max_body_bytes, args.echo_auth, args.latency_jitter_ms) == (900, True, 0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--envelope", "orders=items"])
