"""OpenLineage in a real run: the provider's listener emits, through its file transport, the inputs and
output of each upload with the record counts.

The DAG runs in a fresh process (``_lineage_run.py``) whose environment sets ``[openlineage] transport``
to the file transport: Airflow's OpenLineage plugin decides once per process whether it is enabled.
Klar is the sandbox; the SQL sources are a SQLite file and a real PostgreSQL server on loopback.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_klar.sandbox.fake_data import fake_orders
from tests.e2e._dags import write_jsonl
from tests.postgres_server import PostgresServer, postgres_server

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("airflow.providers.openlineage")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def task_events(events: list[dict[str, Any]], task_id: str) -> dict[str, dict[str, Any]]:
    """The events of one task's run, by type (START, COMPLETE, FAIL)."""
    found = {e["eventType"]: e for e in events if e["job"]["name"].endswith(f".{task_id}")}
    assert found, (task_id, sorted({e["job"]["name"] for e in events}))
    return found


def test_uploads_emit_their_inputs_the_klar_resource_and_the_counts(
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    postgres: PostgresServer,
) -> None:
    orders = list(fake_orders(30))
    write_jsonl(tmp_path / "day1.jsonl", orders[:20])
    write_jsonl(tmp_path / "day2.jsonl", orders[20:])
    sqlite_file = tmp_path / "shop.db"
    with sqlite3.connect(sqlite_file) as db:
        db.execute("CREATE TABLE payments (order_id TEXT, amount REAL)")
        db.executemany("INSERT INTO payments VALUES (?, ?)", [(f"ORD-{i}", 1.5) for i in range(12)])
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS shipments")
        conn.execute("CREATE TABLE shipments (order_id text, cost numeric)")
        conn.execute("INSERT INTO shipments SELECT 'ORD-' || i, 4.9 FROM generate_series(0, 7) AS i")
    bad = list(fake_orders(5))
    bad[1]["cancelledAt"] = 0
    bad[3]["cancelledAt"] = 0
    events_file = tmp_path / "openlineage.jsonl"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "dag_id": "klar_e2e_lineage",
                "files": str(tmp_path / "day*.jsonl"),
                "postgres": True,
                "bad_records": bad,
            }
        )
    )
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "klar-e2e",
        "AIRFLOW_CONN_SHOP_SQLITE": json.dumps({"conn_type": "sqlite", "host": str(sqlite_file)}),
        "AIRFLOW_CONN_SHOP_POSTGRES": postgres.uri,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e._lineage_run", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert json.loads(result.removeprefix("RESULT ")) == {"state": "failed"}  # too_many_rejections
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    klar = f"klar://{klar_sandbox.url.split('://', 1)[1]}"

    # Files: each file read is an input; the resource is the output, with the records Klar accepted.
    complete = task_events(events, "from_files")["COMPLETE"]
    assert sorted((d["namespace"], d["name"]) for d in complete["inputs"]) == [
        ("file", str(tmp_path / "day1.jsonl")),
        ("file", str(tmp_path / "day2.jsonl")),
    ]
    (output,) = complete["outputs"]
    assert (output["namespace"], output["name"]) == (klar, "orders")
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 30
    counts = complete["run"]["facets"]["klarUpload"]
    assert {k: counts[k] for k in ("resource", "mode", "records", "accepted", "rejected")} == {
        "resource": "orders",
        "mode": "upload",
        "records": 30,
        "accepted": 30,
        "rejected": 0,
    }

    # SQLite: the provider cannot name its tables; the query travels as the job's sql facet.
    complete = task_events(events, "from_sqlite")["COMPLETE"]
    assert complete["inputs"] == []
    assert "FROM payments" in complete["job"]["facets"]["sql"]["query"]
    (output,) = complete["outputs"]
    assert (output["namespace"], output["name"]) == (klar, "transaction-costs")
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 12

    # PostgreSQL: the tables the query reads, in OpenLineage's naming for PostgreSQL.
    complete = task_events(events, "from_postgres")["COMPLETE"]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        (f"postgres://127.0.0.1:{postgres.port}", "postgres.public.shipments")
    ]
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 8

    # A failed upload reports what it did send, and its counts.
    fail = task_events(events, "too_many_rejections")["FAIL"]
    assert fail["inputs"] == []  # records= from XCom or the DAG: the upstream task is the lineage
    assert fail["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 3
    counts = fail["run"]["facets"]["klarUpload"]
    assert (counts["records"], counts["accepted"], counts["rejected"]) == (5, 3, 2)
    assert klar_sandbox.token not in events_file.read_text()
