"""SQLite storage of the sandbox: records upserted by their Klar key, and Klar's status counters.

One connection guarded by a lock serves every thread: SQLite serializes writes anyway, and a single
connection is the only way an in-memory database is shared between threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    resource TEXT NOT NULL,
    key TEXT NOT NULL,
    id TEXT,
    version TEXT NOT NULL,
    body TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    writes INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (resource, key)
);
CREATE INDEX IF NOT EXISTS records_by_id ON records (resource, id);
CREATE TABLE IF NOT EXISTS status (
    resource TEXT PRIMARY KEY,
    total INTEGER NOT NULL DEFAULT 0,
    last_batch_count INTEGER NOT NULL DEFAULT 0,
    last_success TEXT,
    last_failure TEXT
);
"""

_UPSERT = """
INSERT INTO records (resource, key, id, version, body, stored_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (resource, key) DO UPDATE SET
    id = excluded.id, version = excluded.version, body = excluded.body, stored_at = excluded.stored_at,
    writes = records.writes + 1
"""


def utc_timestamp(moment: datetime | None = None) -> str:
    """Return ``moment`` (default: now) the way Klar writes times: ISO 8601, milliseconds, ``Z``."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One record to upsert.

    :param key: The upsert key (the id, or a JSON array of the key fields for composite keys).
    :param id: The record's id field as text, for lookups by id.
    :param body: The record's JSON text, stored as sent.
    """

    key: str
    id: str | None
    body: str


@dataclass(frozen=True, slots=True)
class StatusRow:
    """Klar's status counters for one resource, as stored.

    :param total: Objects stored by ``/json`` submissions, each re-send counted again.
    :param last_batch_count: Objects stored by the latest stored submission.
    :param last_success: Time of the latest stored submission (Klar's format), if any.
    :param last_failure: Time of the latest refused submission (Klar's format), if any.
    """

    total: int = 0
    last_batch_count: int = 0
    last_success: str | None = None
    last_failure: str | None = None

    def to_api(self) -> dict[str, Any]:
        """Return the status object as Klar sends it: counts as strings."""
        return {
            "total": str(self.total),
            "lastBatchCount": str(self.last_batch_count),
            "lastSuccess": self.last_success,
            "lastFailure": self.last_failure,
        }


class Store:
    """Records and status counters in SQLite (in memory, or a file that survives restarts).

    :param path: A database file, or ``None`` (or ``":memory:"``) for a private in-memory database.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path or ":memory:"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            # WAL + NORMAL: a crash may lose the last commit but never corrupts; far fewer fsyncs.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(records)")}
        if "writes" not in columns:  # a database file written by an older sandbox
            self._conn.execute("ALTER TABLE records ADD COLUMN writes INTEGER NOT NULL DEFAULT 1")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def upsert(self, resource: str, version: str, rows: Sequence[StoredRow]) -> None:
        """Create or overwrite ``rows`` of ``resource`` in one transaction.

        :param resource: The Klar resource name.
        :param version: The API version the rows were sent to.
        :param rows: The rows; a later row with the same key wins, as in Klar.
        """
        now = utc_timestamp()
        params = [(resource, r.key, r.id, version, r.body, now) for r in rows]
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(_UPSERT, params)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def count(self, resource: str | None = None) -> int:
        """Return how many distinct records are stored for ``resource`` (all resources when ``None``)."""
        with self._lock:
            if resource is None:
                row = self._conn.execute("SELECT COUNT(*) FROM records").fetchone()
            else:
                row = self._conn.execute(
                    "SELECT COUNT(*) FROM records WHERE resource = ?", (resource,)
                ).fetchone()
        return int(row[0])

    def counts(self) -> dict[str, int]:
        """Return the number of stored records per resource (resources with none are left out)."""
        with self._lock:
            rows = self._conn.execute("SELECT resource, COUNT(*) FROM records GROUP BY resource").fetchall()
        return {name: int(n) for name, n in rows}

    def get(self, resource: str, record_id: str) -> dict[str, Any] | None:
        """Return the record whose id (``orderId`` for cost resources) or key is ``record_id``.

        When several cost records share an ``orderId`` (COGS per line item), the latest stored wins.

        :param resource: The Klar resource name.
        :param record_id: The id, or the composite key as stored.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM records WHERE resource = ? AND (id = ? OR key = ?) "
                "ORDER BY stored_at DESC, rowid DESC LIMIT 1",
                (resource, record_id, record_id),
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def info(self, resource: str, record_id: str) -> dict[str, Any] | None:
        """Return what is stored under an id (or key), with its bookkeeping; ``None`` when nothing is.

        :param resource: The Klar resource name.
        :param record_id: The id, or the composite key as stored; the latest stored wins when several
            records share the id (COGS per line item).
        :returns: ``{"id", "key", "api_version", "stored_at", "writes", "body"}``: ``writes`` counts
            the times the key was stored (1 for a record sent once), ``body`` the current version.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT id, key, version, stored_at, writes, body FROM records "
                "WHERE resource = ? AND (id = ? OR key = ?) ORDER BY stored_at DESC, rowid DESC LIMIT 1",
                (resource, record_id, record_id),
            ).fetchone()
        if row is None:
            return None
        found_id, key, version, stored_at, writes, body = row
        return {
            "id": found_id,
            "key": key,
            "api_version": version,
            "stored_at": stored_at,
            "writes": int(writes),
            "body": json.loads(body),
        }

    def records(
        self, resource: str, *, record_id: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Return stored records of ``resource`` in the order they were first stored.

        :param resource: The Klar resource name.
        :param record_id: Only records with this id (``orderId`` for cost resources).
        :param limit: At most this many records.
        :param offset: Skip this many records first.
        """
        sql = "SELECT body FROM records WHERE resource = ?"
        params: list[Any] = [resource]
        if record_id is not None:
            sql += " AND id = ?"
            params.append(record_id)
        sql += " ORDER BY rowid LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [json.loads(body) for (body,) in rows]

    def status(self, resource: str) -> StatusRow:
        """Return the status counters of ``resource``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT total, last_batch_count, last_success, last_failure FROM status WHERE resource = ?",
                (resource,),
            ).fetchone()
        return StatusRow() if row is None else StatusRow(*row)

    def record_success(self, resource: str, stored: int, at: str | None = None) -> None:
        """Count a stored submission: ``total += stored``, ``lastBatchCount = stored``, ``lastSuccess``.

        :param resource: The Klar resource name.
        :param stored: How many objects the submission stored.
        :param at: The time to record (default now).
        """
        with self._lock:
            self._conn.execute(
                "INSERT INTO status (resource, total, last_batch_count, last_success) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (resource) DO UPDATE SET total = total + excluded.total, "
                "last_batch_count = excluded.last_batch_count, last_success = excluded.last_success",
                (resource, stored, stored, at or utc_timestamp()),
            )

    def record_failure(self, resource: str, at: str | None = None) -> None:
        """Count a refused submission: only ``lastFailure`` changes.

        :param resource: The Klar resource name.
        :param at: The time to record (default now).
        """
        with self._lock:
            self._conn.execute(
                "INSERT INTO status (resource, last_failure) VALUES (?, ?) "
                "ON CONFLICT (resource) DO UPDATE SET last_failure = excluded.last_failure",
                (resource, at or utc_timestamp()),
            )

    def reset(self, resources: Iterable[str] | None = None) -> None:
        """Delete stored records and status counters (of ``resources`` only, when given)."""
        with self._lock:
            if resources is None:
                self._conn.execute("DELETE FROM records")
                self._conn.execute("DELETE FROM status")
            else:
                for name in resources:
                    self._conn.execute("DELETE FROM records WHERE resource = ?", (name,))
                    self._conn.execute("DELETE FROM status WHERE resource = ?", (name,))
