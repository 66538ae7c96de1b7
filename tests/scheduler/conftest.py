"""Fixtures of the real-scheduler suite: one Airflow (four components) for the suite, the session's sandbox.

The Airflow components get their own ``AIRFLOW_HOME`` and SQLite database, apart from the one the rest
of the test session uses, and reach the sandbox over loopback through ``AIRFLOW_CONN_KLAR_DEFAULT``.
Each test starts from an empty sandbox (records, request log, faults).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.airflow_stack import AirflowStack, airflow_env, free_port

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox.server import SandboxServer

DAGS = Path(__file__).resolve().parent / "dags"


@pytest.fixture(scope="session")
def suite_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the suite's DAGs read their files from (``KLAR_SUITE_DATA``)."""
    return tmp_path_factory.mktemp("klar-suite-data")


# Module scope: the components are stopped once this suite is done, not left running through the rest
# of the session.
@pytest.fixture(scope="module")
def airflow_stack(
    tmp_path_factory: pytest.TempPathFactory, klar_sandbox_server: SandboxServer, suite_data: Path
) -> Iterator[AirflowStack]:
    """api-server, scheduler, dag-processor and triggerer, started once, stopped after the suite."""
    home = tmp_path_factory.mktemp("klar-suite-airflow-home")
    name, value = klar_sandbox_server.env_var("klar_default")
    extra = {
        name: value,
        "KLAR_SUITE_DATA": str(suite_data),
        # Retries, deferrals and trigger events are picked up sooner.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    }
    if "KLAR_SUITE_BATCH" in os.environ:  # a measurement with other sizes (see test_real_scheduler.py)
        extra["KLAR_SUITE_BATCH"] = os.environ["KLAR_SUITE_BATCH"]
    port = free_port()
    stack = AirflowStack(home, f"http://127.0.0.1:{port}", airflow_env(home, DAGS, port, extra))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def klar(klar_sandbox_server: SandboxServer) -> SandboxServer:
    """The session's sandbox, emptied."""
    klar_sandbox_server.reset()
    return klar_sandbox_server


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    """Write ``records`` as JSON Lines to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for record in records:
            out.write(json.dumps(record))
            out.write("\n")
    return path
