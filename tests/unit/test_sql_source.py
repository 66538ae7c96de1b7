"""The SQL source against a real SQLite database, reached through an Airflow connection and its hook."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_klar.exceptions import KlarConfigurationError, KlarSourceError
from airflow_provider_klar.upload._sql import (
    SqlSource,
    _plain,
    has_top_level_order_by,
    query_name,
)
from airflow_provider_klar.upload.accounting import where


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite database behind the Airflow connection ``shop_db``, with a table of order documents."""
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, doc TEXT)")
        conn.execute("CREATE TABLE costs (order_id TEXT, amount REAL, carrier TEXT)")
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?)",
            [(f"ORD-{i:03d}", json.dumps({"id": f"ORD-{i:03d}", "orderName": f"#{i}"})) for i in range(25)],
        )
        conn.executemany(
            "INSERT INTO costs VALUES (?, ?, ?)",
            [("ORD-001", 4.5, "dhl"), ("ORD-002", 3.0, None)],
        )
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def test_one_json_column_is_the_record_and_rows_are_numbered(shop: Path) -> None:
    source = SqlSource("SELECT doc FROM orders ORDER BY id", "shop_db", fetch_rows=7)
    read = list(source)
    assert [r.record["id"] for r in read] == [f"ORD-{i:03d}" for i in range(25)]
    assert [r.position for r in read] == list(range(25))
    assert [r.line for r in read] == list(range(1, 26))
    assert all(r.ok and r.raw is None for r in read)
    assert read[4].source == 'query "SELECT doc FROM orders ORDER BY id"'
    assert where(read[4].position, read[4].source, read[4].line) == (
        'row 5 of query "SELECT doc FROM orders ORDER BY id"'
    )


def test_more_columns_make_a_dict_and_null_leaves_the_field_out(shop: Path) -> None:
    sql = 'SELECT order_id AS "orderId", amount AS "totalLogisticsCosts", carrier FROM costs ORDER BY 1'
    read = list(SqlSource(sql, "shop_db", name="costs.sql"))
    assert [r.record for r in read] == [
        {"orderId": "ORD-001", "totalLogisticsCosts": 4.5, "carrier": "dhl"},
        {"orderId": "ORD-002", "totalLogisticsCosts": 3.0},
    ]
    assert read[0].source == "query costs.sql"


def test_a_row_that_is_not_a_json_object_is_an_error_record_and_reading_goes_on(shop: Path) -> None:
    with sqlite3.connect(shop) as conn:
        conn.execute("UPDATE orders SET doc = '[1, 2]' WHERE id = 'ORD-001'")
        conn.execute("UPDATE orders SET doc = '{\"id\": \"ORD-002\",' WHERE id = 'ORD-002'")
        conn.execute("UPDATE orders SET doc = NULL WHERE id = 'ORD-003'")
        conn.execute('UPDATE orders SET doc = \'{"id": "ORD-004", "x": NaN}\' WHERE id = \'ORD-004\'')
    read = list(SqlSource("SELECT doc FROM orders ORDER BY id", "shop_db"))
    assert len(read) == 25
    errors = {r.line: r.error for r in read if not r.ok}
    assert set(errors) == {2, 3, 4, 5}
    assert errors[2] == "row 2: column doc: expected a JSON object, got an array"
    assert errors[3].startswith("row 3: column doc: invalid JSON: ")
    assert errors[4].startswith(
        "row 4: column doc: expected a JSON object (a json value or its text), got NULL"
    )
    # NaN is not JSON, and Klar cannot store it.
    assert errors[5].startswith("row 5: column doc: invalid JSON")
    assert read[2].raw == '{"id": "ORD-002",'  # the text, for the rejected file


def test_rows_are_fetched_in_chunks_never_all_at_once(shop: Path) -> None:
    calls: list[int] = []

    class Cursor(sqlite3.Cursor):
        def fetchmany(self, size: int = 1) -> list[Any]:
            rows = super().fetchmany(size)
            calls.append(len(rows))
            return rows

        def fetchall(self) -> list[Any]:
            raise AssertionError("fetchall() loads the whole result")

    class Connection(sqlite3.Connection):
        def cursor(self, *args: Any, **kwargs: Any) -> Any:
            return super().cursor(Cursor)

    class Hook:
        def get_conn(self) -> sqlite3.Connection:
            return sqlite3.connect(shop, factory=Connection)

    source = SqlSource("SELECT doc FROM orders ORDER BY id", "unused", hook=Hook(), fetch_rows=10)
    first = next(source)
    assert first.record["id"] == "ORD-000"
    assert calls == [10]  # one chunk read for the first record, not the table
    assert len(list(source)) == 24
    assert calls == [10, 10, 5, 0]


def test_closing_early_closes_the_connection(shop: Path) -> None:
    closed: list[str] = []

    class Connection(sqlite3.Connection):
        def close(self) -> None:
            closed.append("connection")
            super().close()

    class Hook:
        def get_conn(self) -> sqlite3.Connection:
            return sqlite3.connect(shop, factory=Connection)

    source = SqlSource("SELECT doc FROM orders ORDER BY id", "unused", hook=Hook(), fetch_rows=5)
    next(source)
    source.close()
    assert closed == ["connection"]


def test_a_query_the_database_refuses_raises_a_source_error_naming_it(shop: Path) -> None:
    refused = r'failed on query "SELEC doc FROM orders" before its first row'
    with pytest.raises(KlarSourceError, match=refused):
        next(SqlSource("SELEC doc FROM orders", "shop_db"))


def test_two_columns_of_one_name_are_a_configuration_error(shop: Path) -> None:
    with pytest.raises(KlarConfigurationError, match="two columns named 'id'; name each column"):
        next(SqlSource("SELECT id, doc, id FROM orders", "shop_db"))


def test_a_statement_without_rows_is_a_configuration_error(shop: Path) -> None:
    with pytest.raises(KlarConfigurationError, match="returns no rows at all"):
        next(SqlSource("UPDATE orders SET doc = doc WHERE 0", "shop_db"))


def test_a_connection_that_is_not_a_database_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOT_A_DB", json.dumps({"conn_type": "klar", "host": "http://x"}))
    with pytest.raises(KlarConfigurationError, match="not a DbApiHook"):
        next(SqlSource("SELECT 1", "not_a_db"))


def test_an_empty_query_is_refused() -> None:
    with pytest.raises(KlarConfigurationError, match="must be a query"):
        SqlSource("  ", "shop_db")


def test_nothing_runs_before_the_first_record_is_asked_for() -> None:
    source = SqlSource("SELECT 1, 2", "no_such_connection")
    assert source.source == 'query "SELECT 1, 2"'
    assert len(source.fingerprint) == 16


@pytest.mark.parametrize(
    ("sql", "ordered"),
    [
        ("SELECT * FROM t ORDER BY id", True),
        ("select *\nfrom t\norder\n  by id desc", True),
        ("SELECT * FROM t", False),
        ("SELECT id, row_number() OVER (ORDER BY id) FROM t", False),
        ("SELECT * FROM (SELECT * FROM t ORDER BY id) s", False),
        ("WITH s AS (SELECT * FROM t ORDER BY id) SELECT * FROM s", False),
        ("SELECT 'ORDER BY' AS x FROM t", False),
        ("SELECT * FROM t -- ORDER BY id", False),
        ("SELECT * FROM t /* ORDER BY id */", False),
        ('SELECT "order by" FROM t', False),
        ("SELECT a FROM t UNION ALL SELECT a FROM u ORDER BY a", True),
        ("SELECT x FROM t WHERE y IN (SELECT y FROM u) ORDER BY x", True),
    ],
)
def test_order_by_is_found_only_at_the_top_level(sql: str, ordered: bool) -> None:
    assert has_top_level_order_by(sql) is ordered


def test_query_names_are_short_and_on_one_line() -> None:
    assert query_name("SELECT *\n  FROM t -- all\n WHERE x = 1") == 'query "SELECT * FROM t WHERE x = 1"'
    long = query_name("SELECT " + ", ".join(f"column_{i}" for i in range(30)) + " FROM t")
    assert len(long) < 80
    assert long.endswith('..."')
    assert query_name("SELECT 1", "orders.sql") == "query orders.sql"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("19.99"), 19.99),
        (Decimal("3"), 3),
        (Decimal("3.00"), 3),
        (dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), 1735787045),
        (dt.datetime(2025, 1, 2, 3, 4, 5), 1735787045),  # no time zone: taken as UTC
        (dt.datetime(2025, 1, 2, 4, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))), 1735787045),
        (dt.datetime(2025, 1, 2, 3, 4, 5, 500000, tzinfo=dt.timezone.utc), 1735787045.5),
        (dt.date(2025, 1, 2), 1735776000),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ([Decimal("1.5"), None], [1.5, None]),
        ({"nested": [1]}, {"nested": [1]}),
        (True, True),
    ],
)
def test_column_values_become_json_values(value: Any, expected: Any) -> None:
    out = _plain(value)
    assert out == expected
    assert type(out) is type(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Decimal("NaN"), "NaN is not a number JSON can carry"),
        (dt.time(3, 4), "a time value cannot be sent to Klar; cast it in the query"),
        (b"\x00\x01", "a bytes value cannot be sent to Klar"),
        (dt.timedelta(days=1), "a timedelta value"),
    ],
)
def test_values_json_cannot_carry_are_refused_with_a_reason(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _plain(value)


def test_a_row_with_a_value_json_cannot_carry_is_an_error_record_naming_the_column() -> None:
    class Hook:
        def get_conn(self) -> sqlite3.Connection:
            conn = sqlite3.connect(":memory:")
            conn.execute("CREATE TABLE t (order_id TEXT, blob BLOB)")
            conn.execute("INSERT INTO t VALUES ('ORD-1', x'0001'), ('ORD-2', NULL)")
            return conn

    read = list(SqlSource("SELECT order_id, blob FROM t ORDER BY 1", "unused", hook=Hook()))
    assert read[0].error == (
        "row 1: column blob: a bytes value cannot be sent to Klar; cast it in the query (to text, a number, "
        "or Unix seconds with EXTRACT(EPOCH FROM ...))"
    )
    assert "ORD-1" in str(read[0].raw)
    assert read[1].record == {"order_id": "ORD-2"}
