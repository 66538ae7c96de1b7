"""sql= and transform= end to end: real Airflow (``dag.test()`` on SQLite), a real SQLite database and a real
PostgreSQL server (started on loopback by ``tests/postgres_server.py``), real HTTP to the sandbox.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.airflow_compat import dag_bag
from tests.e2e._dags import run_upload, upload_summary
from tests.postgres_server import PostgresServer, postgres_server

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]


def load_example() -> Any:
    """The example DAG's module (its SQL and its transform function), as users copy it."""
    spec = importlib.util.spec_from_file_location(
        "klar_orders_from_sql", REPO / "example_dags" / "klar_orders_from_sql.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def shop_db(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    """The example's tables in the server, behind the Airflow connection ``shop_db``."""
    with postgres.connect() as conn:
        conn.execute(load_example().SAMPLE_TABLES)
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", postgres.uri)
    return postgres


def test_logistics_costs_from_sqlite_columns_with_a_bad_row_named_by_its_row(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "erp.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE shipping (order_id TEXT, cost REAL)")
        conn.executemany(
            "INSERT INTO shipping VALUES (?, ?)", [(f"ORD-{i:04d}", 2.5 + i % 7) for i in range(2500)]
        )
        conn.execute("UPDATE shipping SET cost = NULL WHERE order_id = 'ORD-0041'")
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    rejected = tmp_path / "rejected.jsonl"

    dag_run = run_upload(
        "klar_e2e_sql_sqlite",
        store_dag,
        task_id="upload_costs",
        resource="logistics-costs",
        sql='SELECT order_id AS "orderId", cost AS "totalLogisticsCosts" FROM shipping ORDER BY order_id',
        sql_conn_id="erp_db",
        max_rejected=1,
        rejected_path=str(rejected),
    )

    assert dag_run.state == "success"
    summary = upload_summary(dag_run, "upload_costs")
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (2500, 2499, 1)
    assert summary["rejected_ids"] == ["ORD-0041"]
    assert klar_sandbox.count("logistics-costs") == 2499
    assert klar_sandbox.get("logistics-costs", "ORD-0042") == {
        "orderId": "ORD-0042",
        "totalLogisticsCosts": 2.5,
    }
    (entry,) = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert entry["line"] == 42
    assert entry["source"].startswith('query "SELECT order_id AS')
    assert entry["record"] == {"orderId": "ORD-0041"}  # NULL left the field out; the model says it is missing
    assert entry["errors"][0]["path"] == "totalLogisticsCosts"
    assert 'row 42 of query "SELECT order_id AS' in capfd.readouterr().out


def test_the_example_dag_sends_every_order_of_postgres_json_and_flat_export(
    shop_db: PostgresServer,
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bag = dag_bag(str(REPO / "example_dags" / "klar_orders_from_sql.py"), safe_mode=False)
    assert bag.import_errors == {}
    dag_run = bag.dags["klar_orders_from_sql"].test()

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    orders = upload_summary(dag_run, "upload_orders")
    flat = upload_summary(dag_run, "upload_flat_export")
    assert (orders["records"], orders["accepted"], orders["rejected"]) == (40, 40, 0)
    assert (flat["records"], flat["accepted"], flat["rejected"]) == (30, 30, 0)
    assert klar_sandbox.count("orders") == 70

    # Exactly what the query built arrived (numbers as numbers, the nested line items intact).
    with shop_db.connect() as conn:
        built = {row[0]["id"]: row[0] for row in conn.execute(load_example().ORDERS_SQL)}
    assert len(built) == 40
    for order_id, order in built.items():
        assert klar_sandbox.get("orders", order_id) == order
    # The flat export went through transform=: numeric ids became strings, timestamps Unix seconds.
    stored = klar_sandbox.get("orders", "90007")
    assert stored is not None
    assert stored["createdAt"] == 1735722000 + 7 * 11 * 60
    assert stored["lineItems"][0]["taxes"] == [{"taxRate": 0.19, "taxAmount": 4.77}]
    assert stored["customer"] == {"email": "buyer7@example.com"}
    assert "has no ORDER BY" not in capfd.readouterr().out
    reading = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Reading query")]
    assert len(reading) == 2
    assert all("on shop_db with a server-side cursor, 1000 rows at a time" in m for m in reading)


def test_an_unordered_query_warns_and_a_failing_transform_rejects_only_its_row(
    shop_db: PostgresServer,
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    flat_to_order = load_example().flat_to_order

    def picky(row: dict[str, Any]) -> dict[str, Any]:
        if row["order_id"] == 90013:
            raise ValueError(f"no tax rule for {row['sku']}")
        return flat_to_order(row)

    dag_run = run_upload(
        "klar_e2e_sql_unordered",
        store_dag,
        task_id="upload_flat",
        sql="SELECT * FROM shop_flat_export",
        sql_conn_id="shop_db",
        transform=picky,
        max_rejected=1,
    )

    assert dag_run.state == "success"
    summary = upload_summary(dag_run, "upload_flat")
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (30, 29, 1)
    assert klar_sandbox.count("orders") == 29
    assert klar_sandbox.get("orders", "90013") is None
    out = capfd.readouterr().out
    assert 'query "SELECT * FROM shop_flat_export" has no ORDER BY of its own' in out
    assert "transform= failed: picky raised ValueError: no tax rule for SKU-13" in out


def test_a_retried_try_resumes_an_ordered_query_after_the_confirmed_rows(
    postgres: PostgresServer, klar_sandbox: SandboxServer
) -> None:
    """Batches confirmed before a failure are not sent again: the retry skips their rows by number."""
    from airflow_provider_klar.exceptions import KlarTransientError
    from airflow_provider_klar.hooks.klar import KlarHook
    from airflow_provider_klar.upload._sql import SqlSource
    from airflow_provider_klar.upload.engine import EngineSettings, UploadEngine

    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS costs")
        conn.execute("CREATE TABLE costs (order_id text PRIMARY KEY, amount numeric(8, 2))")
        conn.execute(
            "INSERT INTO costs SELECT 'C-' || lpad(g::text, 4, '0'), g / 100.0 FROM generate_series(1, 500) g"
        )
    sql = 'SELECT order_id AS "orderId", amount AS "totalLogisticsCosts" FROM costs ORDER BY order_id'

    class Memory:
        state: dict[str, Any] | None = None

        def load(self) -> dict[str, Any] | None:
            return self.state

        def save(self, state: dict[str, Any]) -> None:
            self.state = json.loads(json.dumps(state))

        def clear(self) -> None:
            self.state = None

    class FailsOnThirdBatch:
        """The real hook, but Klar "stays down" from the third batch on in the first try."""

        def __init__(self, hook: KlarHook, fail_from: int | None) -> None:
            self.hook, self.fail_from, self.sent = hook, fail_from, []

        def upload(self, resource: str, records: Any, **kwargs: Any) -> Any:
            if self.fail_from is not None and len(self.sent) >= self.fail_from:
                raise KlarTransientError("Klar stayed unreachable (scripted)")
            self.sent.append([r["orderId"] for r in records])
            return self.hook.upload(resource, records, **kwargs)

        validate = upload

    settings = EngineSettings(
        resource="logistics-costs", api_version="04.2024", id_field="orderId", batch_size=100,
        max_concurrency=1, source_key="sql:test",
    )  # fmt: skip
    checkpoint = Memory()
    with KlarHook() as hook:
        first = FailsOnThirdBatch(hook, fail_from=2)
        rows = SqlSource(sql, "unused", hook=_PsycopgHook(postgres))
        with closing(rows), pytest.raises(KlarTransientError):
            UploadEngine(settings, first, checkpoint=checkpoint).run(rows)
        assert [len(ids) for ids in first.sent] == [100, 100]
        assert checkpoint.state is not None
        assert checkpoint.state["confirmed"] == [[0, 199]]

        second = FailsOnThirdBatch(hook, fail_from=None)
        with closing(SqlSource(sql, "unused", hook=_PsycopgHook(postgres))) as rows:
            result = UploadEngine(settings, second, checkpoint=checkpoint).run(rows)
    assert result.resumed_records == 200
    assert result.tally.records == 500
    assert result.tally.accepted == 500
    resent = {i for ids in second.sent for i in ids} & {i for ids in first.sent for i in ids}
    assert resent == set()
    assert second.sent[0][0] == "C-0201"
    assert klar_sandbox.count("logistics-costs") == 500


class _PsycopgHook:
    """A hook handing out a psycopg connection to the test server (what PostgresHook.get_conn does)."""

    def __init__(self, server: PostgresServer, *, driver: str = "psycopg", autocommit: bool = False) -> None:
        self.server, self.driver, self.autocommit = server, driver, autocommit

    def get_conn(self) -> Any:
        driver = importlib.import_module(self.driver)
        conn = driver.connect(host="127.0.0.1", port=self.server.port, user="postgres", dbname="postgres")
        conn.autocommit = self.autocommit
        return conn


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
@pytest.mark.parametrize("autocommit", [False, True])
def test_both_postgres_drivers_stream_through_a_server_side_cursor(
    postgres: PostgresServer, driver: str, autocommit: bool
) -> None:
    """A named cursor: the server holds the result, each fetchmany asks it for the next rows."""
    from airflow_provider_klar.upload._sql import SqlSource

    hook = _PsycopgHook(postgres, driver=driver, autocommit=autocommit)
    sql = "SELECT json_build_object('id', 'R-' || g, 'n', g) FROM generate_series(1, 2500) AS g ORDER BY g"
    source = SqlSource(sql, "unused", hook=hook, fetch_rows=1000)
    first = next(source)
    assert first.record == {"id": "R-1", "n": 1}
    with postgres.connect() as conn:
        # While the upload reads, the server holds the open cursor of the query (not a fetched result).
        busy = conn.execute(
            "SELECT query FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND state = 'idle in transaction'"
        ).fetchall()
        assert len(busy) == 1, busy
        assert re.match(r'(DECLARE|FETCH FORWARD 1000 FROM) "?klar_upload_', busy[0][0], re.I), busy
    rest = list(source)
    assert len(rest) == 2499
    assert rest[-1].line == 2500


def test_a_query_failing_midway_names_how_far_it_got(postgres: PostgresServer) -> None:
    """PostgreSQL computes rows as they are fetched: a division by zero in row 1500 surfaces in the second
    fetch, after the first 1000 rows were handed over."""
    from airflow_provider_klar.exceptions import KlarSourceError
    from airflow_provider_klar.upload._sql import SqlSource

    # (No ORDER BY: a sort would compute every row, and fail, before the first one is returned.)
    sql = "SELECT json_build_object('id', 'R-' || g, 'x', 1 / (g - 1500)) FROM generate_series(1, 3000) g"
    source = SqlSource(sql, "unused", hook=_PsycopgHook(postgres), fetch_rows=1000)
    read: list[Any] = []
    with closing(source), pytest.raises(KlarSourceError) as failure:
        read.extend(source)  # (extend keeps what came before the error)
    assert len(read) == 1000
    assert "after row 1000; the rows after it were not read: DivisionByZero: division by zero" in str(
        failure.value
    )
    assert (failure.value.position, failure.value.source) == (1000, source.source)
