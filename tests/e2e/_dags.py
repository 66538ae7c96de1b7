"""Shared helpers of the end-to-end upload tests: run a DAG, read what its tasks left, a scripted Klar.

Each test defines its DAG in code, stores it in the metadata DB as the DAG processor would (the
``store_dag`` fixture) and runs it with ``dag.test()``: :func:`run_dag` for any DAG, :func:`run_upload`
for the common one of a single ``KlarUploadOperator`` task named ``upload``. What the tasks pushed is
read back with :func:`summary_of` / :func:`upload_summary`, :func:`link_of` and :func:`stored_text`.

:class:`ScriptedKlar` is a few lines of ``http.server`` whose failures a test scripts per request and
whose log keeps the id of every record received, so "nothing confirmed is sent again" can be checked
exactly; the :func:`scripted_klar` fixture runs one and points ``klar_default`` at it (a module uses it
by importing it: ``scripted_klar = _dags.scripted_klar``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.airflow_compat import AIRFLOW_3

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


# -- running DAGs -------------------------------------------------------------------------------------


def run_dag(dag_id: str, build: Callable[[], Any], store_dag: Callable[[Any], None]) -> Any:
    """Define a DAG with ``build``, store it as the DAG processor would, run it with ``dag.test()``.

    :param dag_id: The DAG's id (unique per test: runs and XComs are looked up by it).
    :param build: Called inside the ``with DAG(...)`` block; creates the tasks.
    :param store_dag: The ``store_dag`` fixture.
    :return: The finished DAG run.
    """
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        build()
    store_dag(dag)
    return dag.test()


def run_upload(
    dag_id: str, store_dag: Callable[[Any], None], *, task_id: str = "upload", **arguments: Any
) -> Any:
    """Run a DAG of one ``KlarUploadOperator(task_id=task_id, **arguments)`` with :func:`run_dag`.

    :param dag_id: The DAG's id.
    :param store_dag: The ``store_dag`` fixture.
    :param task_id: The upload task's id.
    :param arguments: The operator's other arguments.
    :return: The finished DAG run.
    """
    from airflow_provider_klar.operators.klar import KlarUploadOperator

    def build() -> None:
        KlarUploadOperator(task_id=task_id, **arguments)

    return run_dag(dag_id, build, store_dag)


def task_instances(dag_run: Any, task_id: str) -> list[Any]:
    """The task instances of ``task_id`` in ``dag_run``, by map index (one for an unmapped task)."""
    return sorted(
        (ti for ti in dag_run.get_task_instances() if ti.task_id == task_id), key=lambda ti: ti.map_index
    )


# -- what the tasks left ------------------------------------------------------------------------------


def _xcom(ti: Any, key: str) -> Any:
    """What a task instance pushed under ``key`` (read the same way on Airflow 2.11 and 3)."""
    return ti.xcom_pull(task_ids=ti.task_id, key=key, map_indexes=ti.map_index)


def summary_of(ti: Any) -> dict[str, Any]:
    """The upload summary a task instance (mapped or not) pushed to XCom, decoded."""
    value = _xcom(ti, "return_value")
    while isinstance(value, str):
        value = json.loads(value)
    assert isinstance(value, dict), value
    return value


def upload_summary(dag_run: Any, task_id: str = "upload") -> dict[str, Any]:
    """The upload summary the (unmapped) task ``task_id`` of ``dag_run`` pushed to XCom, decoded.

    Read the same way on Airflow 2.11 and 3.
    """
    ti = dag_run.get_task_instance(task_id)
    assert ti is not None, task_id
    value = ti.xcom_pull(task_ids=task_id)
    value = json.loads(value) if isinstance(value, str) else value
    assert isinstance(value, dict), value
    return value


def link_of(ti: Any, dag_run: Any) -> Any:
    """The URL of the "Klar" extra link, as the UI gets it (stored by the worker on Airflow 3)."""
    if not AIRFLOW_3:
        # Airflow 2.11 stores no link: its UI asks the operator's link class when it shows the button.
        from airflow_provider_klar.links.klar import KlarLink

        return KlarLink().get_link(dag_run.dag.get_task(ti.task_id), ti_key=ti.key)
    value = _xcom(ti, "_link_KlarLink")
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value  # stored as the bare string


def stored_text(dag_id: str) -> str:
    """Everything Airflow stored for a DAG's runs: XComs and rendered template fields, as text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session
    from sqlalchemy import select

    try:
        from airflow.models.xcom import XComModel as XCom  # Airflow 3
    except ImportError:
        from airflow.models.xcom import XCom  # type: ignore[attr-defined,no-redef]

    with create_session() as session:
        xcoms = session.scalars(select(XCom.value).where(XCom.dag_id == dag_id)).all()
        rendered = session.scalars(
            select(RenderedTaskInstanceFields.rendered_fields).where(
                RenderedTaskInstanceFields.dag_id == dag_id
            )
        ).all()
    # Airflow 2 stores XCom values as serialized bytes.
    texts = [x.decode() if isinstance(x, bytes) else x for x in xcoms]
    return json.dumps([texts, rendered], default=str)


def write_jsonl(path: Path, records: list[Any]) -> Path:
    """Write ``records`` to ``path`` as JSON Lines (a string is written as the line itself); return it."""
    with path.open("w") as out:
        for record in records:
            out.write(record if isinstance(record, str) else json.dumps(record))
            out.write("\n")
    return path


# -- a Klar that fails on cue -------------------------------------------------------------------------


class ScriptedKlar:
    """A minimal Klar ``/json`` endpoint: stores every order it accepts; answers ``fail`` on cue."""

    TOKEN = "e2e-resume-token"

    def __init__(self) -> None:
        self.received: list[list[str]] = []
        self.answers: list[int] = []
        self.fail: Callable[[int], int | None] = lambda n: None
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code = server.answer(self.headers.get("Authorization"), json.loads(body))
                data = json.dumps({"status": "VALID" if code == 201 else "ERROR"}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, auth: str | None, records: list[dict[str, Any]]) -> int:
        if auth != f"Bearer {self.TOKEN}":
            return 401
        with self.lock:
            number = len(self.answers) + 1
            code = self.fail(number) or 201
            self.answers.append(code)
            if code == 201:
                self.received.append([r["id"] for r in records])
        return code

    @property
    def connection(self) -> str:
        host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return json.dumps({"conn_type": "klar", "host": host, "password": self.TOKEN})


Scripted = TypeVar("Scripted", bound=ScriptedKlar)


@contextmanager
def serving(server: Scripted, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    """Start ``server``, point the ``klar_default`` connection at it, and stop it on the way out.

    :param server: A new (not yet started) :class:`ScriptedKlar` or subclass.
    :param monkeypatch: Sets ``AIRFLOW_CONN_KLAR_DEFAULT`` for the test only.
    """
    server.thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_KLAR_DEFAULT", server.connection)
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def scripted_klar(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedKlar]:
    """A running :class:`ScriptedKlar`, the ``klar_default`` connection pointing at it."""
    with serving(ScriptedKlar(), monkeypatch) as server:
        yield server
