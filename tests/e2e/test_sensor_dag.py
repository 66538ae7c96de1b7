"""KlarStatusSensor in real DAGs (``dag.test()`` on SQLite) against an independent loopback status server.

The server here is deliberately not the project's sandbox: a few lines of ``http.server`` whose answers
each test scripts (stale status, 503s, a failure from "another client"), like the checks the sensor
must pass against a server it was not written with.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TOKEN = "e2e-status-token"
STALE = "2020-01-01T00:00:00.000Z"


def klar_time(when: float | None = None) -> str:
    """Format a time the way Klar does: ISO 8601, milliseconds, ``Z``."""
    moment = datetime.fromtimestamp(time.time() if when is None else when, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


#: One scripted answer to a status GET: an HTTP error code, or a change applied before answering.
Step = int | Callable[["StatusServer"], None] | None


class StatusServer:
    """A controllable Klar status endpoint (and a minimal ``/json`` upload) on 127.0.0.1, port 0.

    Each ``GET /<resource>/status`` takes the next step of :attr:`script` (None: answer the current
    state; an int: answer that error code; a callable: change the state, then answer). A POST to
    ``/<version>/<resource>/json`` stores nothing but becomes visible in the status only
    ``lag_gets`` status reads later, as Klar's landing zone does.
    """

    def __init__(self, *, lag_gets: int = 0) -> None:
        self.state: dict[str, Any] = {
            "total": "40",
            "lastBatchCount": "4",
            "lastSuccess": STALE,
            "lastFailure": None,
        }
        self.script: deque[Step] = deque()
        self.lag_gets = lag_gets
        self.pending: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                code, body = server.handle("GET", self.path, self.headers.get("Authorization"), b"")
                self._answer(code, body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code, body = server.handle("POST", self.path, self.headers.get("Authorization"), raw)
                self._answer(code, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def handle(self, method: str, path: str, auth: str | None, raw: bytes) -> tuple[int, Any]:
        with self.lock:
            code, body = self._handle(method, path.split("?", maxsplit=1)[0], auth, raw)
            self.requests.append((method, path, code))
            return code, body

    def _handle(self, method: str, path: str, auth: str | None, raw: bytes) -> tuple[int, Any]:
        if auth != f"Bearer {TOKEN}":
            return 401, {"message": "Unauthorized"}
        parts = path.strip("/").split("/")
        if method == "GET" and len(parts) == 2 and parts[1] == "status":
            return self._status()
        if method == "POST" and len(parts) == 3 and parts[2] == "json":
            records = json.loads(raw)
            count = len(records["items"] if isinstance(records, dict) else records)
            visible_at = self.gets() + self.lag_gets
            self.pending.append((visible_at, {"count": count, "at": klar_time()}))
            return 201, {"status": "VALID"}
        return 404, {"message": f"Cannot {method} {path}"}

    def gets(self) -> int:
        return sum(1 for method, path, _ in self.requests if method == "GET" and path.endswith("/status"))

    def _status(self) -> tuple[int, Any]:
        number = self.gets() + 1
        for item in [p for p in self.pending if p[0] < number]:
            self.pending.remove(item)
            update = item[1]
            self.state.update(
                total=str(int(self.state["total"]) + update["count"]),
                lastBatchCount=str(update["count"]),
                lastSuccess=update["at"],
            )
        step = self.script.popleft() if self.script else None
        if isinstance(step, int):
            return step, {"message": "Service Unavailable"}
        if step is not None:
            step(self)
        return 200, dict(self.state)

    def posts_after_first_get(self) -> list[str]:
        first_get = next(i for i, r in enumerate(self.requests) if r[0] == "GET")
        return [path for method, path, _ in self.requests[first_get:] if method == "POST"]


def succeed(server: StatusServer) -> None:
    server.state.update(lastSuccess=klar_time(), lastBatchCount="3", total="43")


def fail_after_success(server: StatusServer) -> None:
    """Another client's submission succeeds, then the next one fails."""
    now = time.time()
    server.state.update(lastSuccess=klar_time(now - 0.2), lastFailure=klar_time(now))


@pytest.fixture
def status_server(monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> Iterator[StatusServer]:
    server = StatusServer()
    server.thread.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT",
        json.dumps({"conn_type": "klar", "host": server.url, "password": TOKEN}),
    )
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def run_dag(dag: Any, store_dag: Callable[[Any], None]) -> tuple[str, dict[str, str], float]:
    """Run ``dag`` with ``dag.test()``; return the run's state, each task's state, and the seconds taken."""
    store_dag(dag)
    started = time.monotonic()
    dag_run = dag.test()
    elapsed = time.monotonic() - started
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        states = {ti.task_id: _plain(ti.state) for ti in tis}
    return _plain(dag_run.state), states, elapsed


def reschedules(dag_id: str, task_id: str) -> int:
    """How many times the task instances of ``dag_id``.``task_id`` were rescheduled."""
    from tests.airflow_compat import reschedule_count

    return reschedule_count(dag_id, task_id)


def _plain(state: Any) -> str:
    return str(getattr(state, "value", state))


def sensor_dag(dag_id: str, out: Path, **sensor_kwargs: Any) -> Any:
    """A DAG: the sensor, then a task that records the sensor's XCom to ``out``."""
    from airflow.providers.common.compat.sdk import DAG, task

    from airflow_provider_klar.sensors.klar import KlarStatusSensor

    with DAG(
        dag_id, schedule=None, start_date=datetime(2025, 1, 1, tzinfo=timezone.utc), catchup=False
    ) as dag:
        sensor_kwargs.setdefault("poke_interval", 0.2)
        sensor_kwargs.setdefault("timeout", 30)
        wait = KlarStatusSensor(task_id="wait", resource="orders", **sensor_kwargs)

        @task
        def record(status: dict[str, Any]) -> None:
            out.write_text(json.dumps(status))

        record(wait.output)
    return dag


def test_deferrable_sensor_succeeds_after_an_upload(
    store_dag: Callable[[Any], None], status_server: StatusServer, tmp_path: Path
) -> None:
    from airflow.providers.common.compat.sdk import DAG, task

    from airflow_provider_klar.sensors.klar import KlarStatusSensor

    status_server.lag_gets = 2  # Klar shows the upload two status reads later
    out = tmp_path / "status.json"
    with DAG(
        "klar_e2e_upload_then_wait",
        schedule=None,
        start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
        catchup=False,
    ) as dag:

        @task
        def upload() -> dict[str, Any]:
            from airflow_provider_klar.hooks.klar import KlarHook

            started_at = datetime.now(timezone.utc).isoformat()
            with KlarHook() as hook:
                result = hook.upload("orders", [{"id": "ORD-1"}, {"id": "ORD-2"}, {"id": "ORD-3"}])
            return {"started_at": started_at, "accepted": result.accepted_count}

        wait = KlarStatusSensor(
            task_id="wait",
            resource="orders",
            since="{{ ti.xcom_pull(task_ids='upload')['started_at'] }}",
            min_total=43,
            deferrable=True,
            poke_interval=0.2,
            timeout=30,
        )

        @task
        def record(status: dict[str, Any]) -> None:
            out.write_text(json.dumps(status))

        upload() >> wait
        record(wait.output)

    state, tis, _ = run_dag(dag, store_dag)
    assert tis == {"upload": "success", "wait": "success", "record": "success"}
    assert state == "success"
    status = json.loads(out.read_text())
    assert status["total"] == 43
    assert status["last_batch_count"] == 3
    # The first check found nothing (so the task deferred), the trigger's polls found the upload.
    assert status_server.gets() >= 3
    assert [m for m, _, _ in status_server.requests].count("POST") == 1
    assert status_server.posts_after_first_get() == []  # neither sensor nor trigger ever POSTs


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_poke_and_reschedule_modes_wait_for_a_fresh_success(
    store_dag: Callable[[Any], None], status_server: StatusServer, tmp_path: Path, mode: str
) -> None:
    status_server.script.extend([None, None, succeed])
    out = tmp_path / "status.json"
    dag = sensor_dag(f"klar_e2e_{mode}", out, mode=mode, deferrable=False, poke_interval=0.2)
    state, tis, _ = run_dag(dag, store_dag)
    assert tis == {"wait": "success", "record": "success"}
    assert state == "success"
    assert json.loads(out.read_text())["total"] == 43
    assert status_server.gets() == 3
    # Reschedule mode gave the worker slot back between checks; poke mode held it.
    assert reschedules(dag.dag_id, "wait") == (2 if mode == "reschedule" else 0)


def test_a_failed_submission_fails_the_deferred_sensor_well_before_its_timeout(
    store_dag: Callable[[Any], None],
    status_server: StatusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status_server.script.extend([None, None, fail_after_success, succeed])
    dag = sensor_dag("klar_e2e_failed", tmp_path / "status.json", deferrable=True, timeout=60)
    state, tis, _ = run_dag(dag, store_dag)
    assert tis["wait"] == "failed"
    assert tis["record"] == "upstream_failed"
    assert state == "failed"
    assert status_server.gets() == 3  # it stopped at the failure
    log = capsys.readouterr().out
    # Failed by the failure, not by the 60 s timeout (no clock needed to tell them apart).
    assert "Sensor has timed out" not in log
    assert "KlarSubmissionFailedError" in log
    assert "submission failed at" in log
    assert "the latest successful one was at" in log
    assert TOKEN not in log


def test_a_status_endpoint_answering_503_twice_does_not_fail_the_sensor(
    store_dag: Callable[[Any], None], status_server: StatusServer, tmp_path: Path
) -> None:
    status_server.script.extend([None, 503, 503, succeed])
    out = tmp_path / "status.json"
    dag = sensor_dag("klar_e2e_503", out, deferrable=True)
    state, tis, _ = run_dag(dag, store_dag)
    assert tis == {"wait": "success", "record": "success"}
    assert state == "success"
    assert [code for _, _, code in status_server.requests].count(503) == 2
    assert json.loads(out.read_text())["last_batch_count"] == 3


MODES = {
    "deferrable": {"deferrable": True},
    "poke": {"deferrable": False, "mode": "poke"},
    "reschedule": {"deferrable": False, "mode": "reschedule"},
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_timeout_with_soft_fail_skips_in_every_mode(
    store_dag: Callable[[Any], None], status_server: StatusServer, tmp_path: Path, mode: str
) -> None:
    dag = sensor_dag(
        f"klar_e2e_soft_fail_{mode}", tmp_path / "status.json", timeout=1.5, soft_fail=True, **MODES[mode]
    )
    state, tis, _ = run_dag(dag, store_dag)
    assert tis == {"wait": "skipped", "record": "skipped"}
    assert state == "success"
    assert status_server.gets() >= 2  # it kept checking until the timeout (a hang is pytest-timeout's)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_timeout_without_soft_fail_fails_in_every_mode(
    store_dag: Callable[[Any], None],
    status_server: StatusServer,
    tmp_path: Path,
    mode: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dag = sensor_dag(f"klar_e2e_timeout_{mode}", tmp_path / "status.json", timeout=1.5, **MODES[mode])
    state, tis, _ = run_dag(dag, store_dag)
    assert tis["wait"] == "failed"
    assert state == "failed"
    # The words the failed-submission test checks are absent when the failure is not a timeout.
    assert "Sensor has timed out" in capsys.readouterr().out


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_failed_submission_is_not_skipped_by_soft_fail_in_any_mode(
    store_dag: Callable[[Any], None], status_server: StatusServer, tmp_path: Path, mode: str
) -> None:
    status_server.script.extend([None, fail_after_success])
    dag = sensor_dag(
        f"klar_e2e_failed_soft_{mode}", tmp_path / "status.json", timeout=30, soft_fail=True, **MODES[mode]
    )
    state, tis, _ = run_dag(dag, store_dag)
    assert tis["wait"] == "failed"
    assert state == "failed"
