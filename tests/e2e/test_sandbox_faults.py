"""End-to-end tests of the sandbox's fault injection, persistence and command line, over loopback HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from airflow_provider_klar.sandbox import SandboxClient, SandboxServer
from airflow_provider_klar.sandbox.fake_data import fake_orders

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


@pytest.fixture
def http(klar_sandbox: SandboxServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {klar_sandbox.token}"}
    with httpx.Client(base_url=klar_sandbox.url, headers=headers, timeout=30) as client:
        yield client


def test_fail_next_answers_in_order_then_recovers(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    klar_sandbox.set_faults(fail_next=[429, 503, "drop"], retry_after=2)
    orders = list(fake_orders(2))
    first = http.post("/07.2025/orders/json", json=orders)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "2")
    second = http.post("/07.2025/orders/json", json=orders)
    assert second.status_code == 503
    assert "Retry-After" not in second.headers
    with pytest.raises(httpx.TransportError):
        http.post("/07.2025/orders/json", json=orders)
    assert klar_sandbox.count("orders") == 0
    assert http.post("/07.2025/orders/json", json=orders).status_code == 201
    assert klar_sandbox.count("orders") == 2
    log = [(e["status"], e["fault"]) for e in klar_sandbox.requests()]
    assert log == [(429, "fail_next"), (503, "fail_next"), (None, "fail_next"), (201, None)]


def test_drop_after_stores_the_batch_but_loses_the_answer(
    http: httpx.Client, klar_sandbox: SandboxServer
) -> None:
    klar_sandbox.set_faults(fail_next=["drop_after", [503, 7]])
    orders = list(fake_orders(2))
    with pytest.raises(httpx.TransportError):
        http.post("/07.2025/orders/json", json=orders)
    assert klar_sandbox.count("orders") == 2
    assert klar_sandbox.status("orders")["total"] == "2"
    (entry,) = klar_sandbox.requests()
    assert (entry["status"], entry["fault"], entry["records"]) == (None, "fail_next", 2)
    again = http.post("/07.2025/orders/json", json=orders)
    assert (again.status_code, again.headers["Retry-After"]) == (503, "7")


def test_faults_spare_inspection_routes_and_are_reset_between_tests(
    http: httpx.Client, klar_sandbox: SandboxServer
) -> None:
    assert klar_sandbox.sandbox.faults.snapshot()["fail_next"] == []
    klar_sandbox.set_faults(fail_rate=1.0, fail_codes=[500])
    assert http.get("/_sandbox/counts").status_code == 200
    assert http.get("/openapi.json").status_code == 200
    assert http.get("/orders/status").status_code == 500


def test_faults_over_http(http: httpx.Client) -> None:
    snapshot = http.post("/_sandbox/faults", json={"fail_next": [502], "latency_ms": 0}).json()
    assert snapshot["fail_next"] == [502]
    assert http.get("/orders/status").status_code == 502
    assert http.post("/_sandbox/faults", json={"fail_rate": 3}).status_code == 400
    assert http.get("/_sandbox/faults").json()["fail_next"] == []


def test_rate_limit_answers_429_with_retry_after(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    klar_sandbox.set_faults(rate_limit="1/m")
    assert http.get("/orders/status").status_code == 200
    limited = http.get("/orders/status")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert klar_sandbox.requests(include_get=True)[-1]["fault"] == "rate_limit"


def test_latency_holds_each_request(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    # That a held request does not block the others is shown without clocks in
    # test_sandbox_switches.py::test_the_log_holds_a_request_before_it_is_answered.
    klar_sandbox.set_faults(latency_ms=300)

    def call(_: int) -> float:
        started = time.perf_counter()
        assert http.get("/orders/status").status_code == 200
        return time.perf_counter() - started

    with ThreadPoolExecutor(3) as pool:
        each = list(pool.map(call, range(3)))
    assert min(each) >= 0.3  # a lower bound only: the sleep guarantees it whatever the machine's load
    assert all(e["duration_ms"] >= 300 for e in klar_sandbox.requests(include_get=True))


def test_db_survives_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "klar.db")
    orders = list(fake_orders(3))
    with SandboxServer(db=db, token="t1") as first:
        response = httpx.post(
            f"{first.url}/07.2025/orders/json", json=orders, headers={"Authorization": "Bearer t1"}
        )
        assert response.status_code == 201
        status = first.status("orders")
    with SandboxServer(db=db, token="t1") as second:
        assert second.count("orders") == 3
        assert second.get("orders", "ORD-2") == orders[2]
        assert second.status("orders") == status
    with SandboxServer() as memory:
        assert memory.count("orders") == 0


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [str(BIN / "klar-sandbox"), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        process.kill()
        pytest.fail(f"klar-sandbox printed {line!r}; stderr: {process.communicate()[1]}")
    return process, match.group(1)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)  # what Popen.terminate() and most supervisors send
    try:
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_cli_starts_answers_and_keeps_its_db(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    process, url = _start_cli(
        "--token", "cli-token", "--db", db, "--latency-ms", "1", "--rate-limit", "100/s"
    )
    try:
        with SandboxClient(url, "cli-token") as client:
            client.wait_ready(timeout=30)
            headers = {"Authorization": "Bearer cli-token"}
            body = {"items": [{"orderId": "ORD-1", "totalLogisticsCosts": 4.2}]}
            assert (
                httpx.post(f"{url}/04.2024/logistics-costs/json", json=body, headers=headers).status_code
                == 201
            )
            assert httpx.post(f"{url}/04.2024/logistics-costs/json", json=body).status_code == 401
            assert client.count("logistics-costs") == 1
    finally:
        _stop(process)
    # What the command stored is in the file: a sandbox started on it again finds it.
    with SandboxServer(db=db) as again:
        assert again.get("logistics-costs", "ORD-1") == {"orderId": "ORD-1", "totalLogisticsCosts": 4.2}
        assert again.status("logistics-costs")["total"] == "1"


def test_cli_refuses_a_bad_rate() -> None:
    result = subprocess.run(
        [str(BIN / "klar-sandbox"), "--rate-limit", "often"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "N/s" in result.stderr
