"""SQL source: the rows of a query run through any ``common.sql`` hook, as :class:`SourceRecord`.

Rows are fetched in chunks of :data:`FETCH_ROWS` with ``fetchmany``, through a server-side cursor where
the driver has one (PostgreSQL's psycopg and psycopg2 named cursors, MySQL's ``SSCursor``): the query's
result is never held whole, by the driver or here. SQLite steps through its result by itself; the
warehouses' drivers (Snowflake, BigQuery, Trino...) fetch their results page by page.

How a row becomes a record:

- a query of **one column** reads it as the record's JSON object: a ``json``/``jsonb`` value the driver
  hands over as a dict, or its text (``json_build_object(...)`` in PostgreSQL, ``TO_JSON_STRING(STRUCT(...))``
  in BigQuery, ``OBJECT_CONSTRUCT(...)`` in Snowflake);
- a query of **two or more columns** reads each row as a dict of its columns, named as the query names
  them (``SELECT order_id AS "orderId", ...``). ``NULL`` leaves the field out; ``DECIMAL`` becomes a
  number; a ``TIMESTAMP`` becomes Unix seconds (a timestamp without time zone is taken as UTC; a
  ``DATE`` as its midnight UTC); ``json`` columns stay nested objects and arrays. Values JSON cannot
  carry (binary, ``TIME``, intervals) reject their row with the column's name.

A row that cannot become a record is not an exception but an error record naming its row, like a
malformed line of a file. A failure of the database itself (a syntax error, a lost connection) raises
:class:`~airflow_provider_klar.exceptions.KlarSourceError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from pydantic_core import from_json

from airflow_provider_klar.exceptions import KlarConfigurationError, KlarSourceError
from airflow_provider_klar.upload._record import SourceRecord, cut

__all__ = ["FETCH_ROWS", "QUERY_PREFIX", "SqlSource", "has_top_level_order_by", "query_name"]

log = logging.getLogger(__name__)

#: Rows asked of the cursor at a time: few enough to keep memory flat, enough to make round trips rare.
FETCH_ROWS = 1000
#: What every SQL source's name starts with; error messages say ``row 17 of query <name>``.
QUERY_PREFIX = "query "
_NAME_LENGTH = 60
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
# Comments and quoted text (strings, quoted identifiers), so that parentheses or words in them are
# not taken for the query's own.
_NOISE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\$\$.*?\$\$", re.S)
_TOKENS = re.compile(r"\(|\)|\border\s+by\b", re.I)


def query_name(sql: str, name: str | None = None) -> str:
    """Return the name of a query's source: ``query <name>``, or ``query "<its start>..."``.

    :param sql: The query.
    :param name: A short name for it (the ``.sql`` file it came from), when there is one.
    """
    if name:
        return f"{QUERY_PREFIX}{name}"
    text = " ".join(_NOISE.sub(lambda m: m.group(0) if m.group(0)[0] in "'\"`$" else " ", sql).split())
    if len(text) > _NAME_LENGTH:
        text = text[: _NAME_LENGTH - 3].rstrip() + "..."
    return f'{QUERY_PREFIX}"{text}"'


def has_top_level_order_by(sql: str) -> bool:
    """Whether ``sql`` ends in an ``ORDER BY`` of its own (not one inside parentheses: a subquery, a
    window function, a CTE), the condition for its rows to come in the same order on every run.

    :param sql: The query.
    """
    depth = 0
    for token in _TOKENS.finditer(_NOISE.sub(" ", sql)):
        text = token.group(0)
        if text == "(":
            depth += 1
        elif text == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            return True
    return False


def _db_hook(conn_id: str) -> Any:
    """Return the ``DbApiHook`` of an Airflow connection."""
    try:
        from airflow.providers.common.sql.hooks.sql import DbApiHook
    except ImportError:
        raise KlarConfigurationError(
            "sql= needs apache-airflow-providers-common-sql: pip install 'airflow-provider-klar[sql]' "
            "and the provider of your database (e.g. apache-airflow-providers-postgres)."
        ) from None
    from airflow.providers.common.compat.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    try:
        hook = connection.get_hook()
    except Exception as exc:  # an unknown conn_type, a provider that is not installed
        raise KlarConfigurationError(
            f"Cannot make a database hook for sql_conn_id={conn_id!r} (conn_type "
            f"{connection.conn_type!r}): {exc}. Install the provider of that database."
        ) from exc
    if not isinstance(hook, DbApiHook):
        raise KlarConfigurationError(
            f"sql_conn_id={conn_id!r} is a {connection.conn_type!r} connection, whose hook "
            f"{type(hook).__name__} is not a DbApiHook of common.sql; use a database connection "
            f"(postgres, mysql, sqlite, snowflake, google_cloud_platform for BigQuery...)."
        )
    return hook


def _open_cursor(conn: Any) -> tuple[Any, bool]:
    """Return a cursor that streams (server-side where the driver has one) and whether it is server-side."""
    package = type(conn).__module__.partition(".")[0]
    if package in ("psycopg", "psycopg2"):
        # A named cursor is a server-side one: DECLARE ... CURSOR, then FETCH per fetchmany. A plain
        # psycopg cursor would load the whole result into the worker's memory on execute. DECLARE needs
        # a transaction block, which a connection set to autocommit does not open.
        if getattr(conn, "autocommit", False):
            conn.autocommit = False
        return conn.cursor(name=f"klar_upload_{uuid.uuid4().hex[:12]}"), True
    if package in ("MySQLdb", "pymysql"):
        cursors = __import__(f"{package}.cursors", fromlist=["SSCursor"])
        return conn.cursor(cursors.SSCursor), True
    return conn.cursor(), False


class SqlSource(Iterator[SourceRecord]):
    """The rows of one query as source records, fetched lazily in chunks; what ``sql=`` reads.

    Nothing is run until the first record is asked for. Close it (or read it to the end) to close the
    cursor and the database connection.

    :param sql: The query (already rendered).
    :param conn_id: The Airflow connection of the database; its hook must be a ``DbApiHook``.
    :param name: A short name for the query in messages (the ``.sql`` file); default its first words.
    :param hook: A ``DbApiHook`` to use instead of the connection's (tests, custom hooks).
    :param fetch_rows: Rows asked of the cursor at a time.
    """

    def __init__(
        self,
        sql: str,
        conn_id: str,
        *,
        name: str | None = None,
        hook: Any = None,
        fetch_rows: int = FETCH_ROWS,
    ) -> None:
        if not isinstance(sql, str) or not sql.strip():
            raise KlarConfigurationError(f"sql= must be a query (a non-empty string), got {sql!r}.")
        self.sql = sql
        self.conn_id = conn_id
        self.source = query_name(sql, name)
        self._hook = hook
        self._fetch_rows = fetch_rows
        self._records: Generator[SourceRecord, None, None] = self._read()

    @property
    def fingerprint(self) -> str:
        """A short hash of the connection id and the query text: a checkpoint of another query is not used."""
        return hashlib.sha256(f"{self.conn_id}\n{self.sql}".encode()).hexdigest()[:16]

    @property
    def ordered(self) -> bool:
        """Whether the query has an ``ORDER BY`` of its own, so a retried try reads rows in the same order."""
        return has_top_level_order_by(self.sql)

    def __iter__(self) -> SqlSource:
        return self

    def __next__(self) -> SourceRecord:
        return next(self._records)

    def close(self) -> None:
        """Stop reading; close the cursor and the connection."""
        self._records.close()

    def _read(self) -> Generator[SourceRecord, None, None]:
        hook = self._hook if self._hook is not None else _db_hook(self.conn_id)
        try:
            conn = hook.get_conn()
        except Exception as exc:
            raise KlarSourceError(
                f"Cannot connect to the database of sql_conn_id={self.conn_id!r}: {_reason(exc)}. "
                "Nothing of the query was read.",
                source=self.source,
                position=0,
            ) from exc
        try:
            cursor, server_side = _open_cursor(conn)
            try:
                yield from self._rows(cursor, server_side)
            finally:
                _quietly(cursor.close)
        finally:
            # Only read: whatever transaction the driver opened is rolled back with the connection.
            _quietly(conn.close)

    def _rows(self, cursor: Any, server_side: bool) -> Generator[SourceRecord, None, None]:
        position = 0
        try:
            cursor.execute(self.sql)
            log.info(
                "Reading %s on %s with a %s cursor, %d rows at a time.",
                self.source,
                self.conn_id,
                "server-side" if server_side else "client",
                self._fetch_rows,
            )
            chunk = cursor.fetchmany(self._fetch_rows)
        except Exception as exc:
            raise self._failed(exc, position) from exc
        # A named (server-side) psycopg2 cursor describes its columns only once it fetched.
        columns = _columns(cursor.description, self.source)
        to_record = _json_record if len(columns) == 1 else _columns_record
        while chunk:
            for row in chunk:
                yield to_record(row, columns, position, self.source)
                position += 1
            try:
                chunk = cursor.fetchmany(self._fetch_rows)
            except Exception as exc:
                raise self._failed(exc, position) from exc

    def _failed(self, exc: BaseException, position: int) -> KlarSourceError:
        where = (
            f"after row {position}; the rows after it were not read"
            if position
            else "before its first row; nothing of it was read"
        )
        return KlarSourceError(
            f"The database of sql_conn_id={self.conn_id!r} failed on {self.source} {where}: {_reason(exc)}.",
            source=self.source,
            position=position,
            line=position + 1,
        )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {cut(text, 500)}"


def _quietly(close: Any) -> None:
    try:
        close()
    except Exception:  # closing after an error must not hide that error
        log.debug("Closing the database cursor or connection failed.", exc_info=True)


def _columns(description: Sequence[Any] | None, source: str) -> list[str]:
    if not description:
        raise KlarConfigurationError(
            f"{source} returns no rows at all (it is not a SELECT); sql= must be a query that returns "
            f"one JSON column or one column per field."
        )
    names = [str(column[0]) for column in description]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise KlarConfigurationError(
                f"{source} returns two columns named {name!r}; name each column as its field "
                f'(SELECT a.id AS "orderId", ...).'
            )
        seen.add(name)
    return names


def _values(row: Any) -> Sequence[Any]:
    # Hooks set up with a dict cursor (a connection extra) hand over mappings; the rest sequences.
    return list(row.values()) if isinstance(row, Mapping) else row


def _error(position: int, source: str, message: str, raw: Any) -> SourceRecord:
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
    return SourceRecord(position, source, position + 1, None, f"row {position + 1}: {message}", cut(text))


def _json_record(row: Any, columns: list[str], position: int, source: str) -> SourceRecord:
    """A one-column row: its value is the record's JSON object (a dict, or its text)."""
    value = _values(row)[0]
    column = columns[0]
    if isinstance(value, dict):
        return SourceRecord(position, source, position + 1, value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            record = from_json(value, allow_inf_nan=False, cache_strings="keys")
        except ValueError as exc:
            return _error(position, source, f"column {column}: invalid JSON: {exc}", value)
        if type(record) is dict:
            return SourceRecord(position, source, position + 1, record)
        problem = f"column {column}: expected a JSON object, got {_kind(record)}"
        return _error(position, source, problem, value)
    got = "NULL" if value is None else type(value).__name__
    return _error(
        position,
        source,
        f"column {column}: expected a JSON object (a json value or its text), got {got}; a query of one "
        f"column must build the whole record, e.g. with json_build_object(...)",
        got if value is None else repr(value),
    )


def _kind(value: Any) -> str:
    from airflow_provider_klar.upload._json import json_type

    return json_type(value)


def _columns_record(row: Any, columns: list[str], position: int, source: str) -> SourceRecord:
    """A row of two or more columns: a dict of its non-NULL columns, values made JSON-friendly."""
    record: dict[str, Any] = {}
    for name, value in zip(columns, _values(row), strict=True):
        if value is None:
            continue  # NULL leaves the field out: Klar rejects a null where it expects a value
        try:
            record[name] = _plain(value)
        except ValueError as exc:
            shown = dict(zip(columns, _values(row), strict=True))
            return _error(position, source, f"column {name}: {exc}", shown)
    return SourceRecord(position, source, position + 1, record)


def _plain(value: Any) -> Any:
    """Return a column value as JSON can carry it; ``ValueError`` says why it cannot."""
    if value is None:  # (inside an array; a NULL column is left out before)
        return None
    if isinstance(value, (str, bool, int, float, dict)):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a number JSON can carry")
        # Whole amounts stay integers (quantities, grams); the rest become floats, as Klar's numbers are.
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        return _seconds(aware - _EPOCH)
    if isinstance(value, dt.date):
        return _seconds(dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc) - _EPOCH)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):  # SQL arrays
        return [_plain(item) for item in value]
    raise ValueError(
        f"a {type(value).__name__} value cannot be sent to Klar; cast it in the query "
        f"(to text, a number, or Unix seconds with EXTRACT(EPOCH FROM ...))"
    )


def _seconds(delta: dt.timedelta) -> int | float:
    # Whole seconds as integers (Klar's timestamps are Unix seconds); sub-second precision kept otherwise.
    micro = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micro // 1_000_000 if micro % 1_000_000 == 0 else micro / 1_000_000
