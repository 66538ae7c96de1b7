"""Write rejected records and their errors as JSON Lines, to a local path or object storage.

One line per rejected record::

    {"position": 17, "source": "s3://bucket/orders.jsonl", "line": 18, "batch": 0, "index_in_batch": 17,
     "id": "ORD-17", "errors": [{"path": "lineItems.0.taxes.0.taxRate", "message": "...", "value": 19}],
     "record": {...the record as read, or the raw text of a malformed line...}}

The file is created on the first rejected record only, so a clean upload leaves no empty file behind.

Every line is strict JSON, whatever the record held: numbers that are not finite are written as the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (and the line's ``errors`` say so), values JSON does
not know as their text, any nesting depth in full. So the file can be fixed and passed back as ``path=``:
the JSON Lines reader recognises this layout and reads each line's ``record``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import IO, Any

from airflow_provider_klar._jsonsafe import NON_FINITE_NOTE, strict_json
from airflow_provider_klar.results import FieldError
from airflow_provider_klar.upload._record import SourceRecord
from airflow_provider_klar.upload.sources import display_name, to_storage_path

__all__ = ["RejectedWriter"]


def _plain(record: Any) -> Any:
    dump = getattr(record, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", by_alias=True, exclude_unset=True)
        except Exception:  # strict_json writes what cannot be dumped as its text
            return record
    return record


def _error_dict(error: FieldError | Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(error, FieldError):
        return error.to_dict()
    if isinstance(error, Mapping):
        return {
            "path": error.get("path", ""),
            "message": error.get("message", ""),
            "value": error.get("value"),
        }
    return {"path": "", "message": str(error), "value": None}


def encode_line(entry: Mapping[str, Any]) -> bytes:
    """Return one rejected-file line: ``entry`` as strict JSON and UTF-8, ending in a newline.

    Never raises for what a record holds (see :func:`~airflow_provider_klar._jsonsafe.strict_json`).
    When a non-finite number had to be written as a string, a note saying so is added to the line's
    ``errors``, so nobody mistakes ``"NaN"`` for what the source held.

    :param entry: The line's fields; a pydantic model under ``"record"`` is dumped by alias.
    """
    line = dict(entry)
    if "record" in line:
        line["record"] = _plain(line["record"])
    text, changed = strict_json(line)
    if changed:
        errors = line.get("errors")
        line["errors"] = [*(errors if isinstance(errors, list) else []), _error_dict(NON_FINITE_NOTE)]
        text, _ = strict_json(line)
    return text.encode("utf-8") + b"\n"


class RejectedWriter:
    """Collect rejected records: count them, and write them as JSON Lines when a path is given.

    Use it as a context manager; the file is opened on the first rejected record and closed (flushed
    to object storage) on exit. Thread-safe: several threads may write through one writer.
    :meth:`reject` writes the documented layout; :meth:`write` writes a line the caller composed.

    :param path: A local path, a URL Airflow's object storage understands (``s3://...``) or an
        ``ObjectStoragePath``; ``None`` only counts. An existing file is replaced.
    :param conn_id: The Airflow connection for the object storage, when the URL does not name one.
    """

    def __init__(self, path: str | Any | None, *, conn_id: str | None = None) -> None:
        self.path = to_storage_path(path, conn_id) if path is not None else None
        self.count = 0
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def location(self) -> str | None:
        """Where the rejected records went (no connection id in it), or ``None`` when nothing was written."""
        return display_name(self.path) if self.path is not None and self.count else None

    def __enter__(self) -> RejectedWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def write(self, entry: Mapping[str, Any]) -> None:
        """Count one rejected record and, with a path, append ``entry`` to the file as one JSON line.

        :param entry: The line to write, JSON-ready; a pydantic model under ``"record"`` is dumped by
            alias, values JSON does not know (datetimes, Decimals) are written as strings, and so are
            non-finite numbers, with a note added to ``entry["errors"]`` (see :func:`encode_line`).
        """
        if self.path is None:
            with self._lock:
                self.count += 1
            return
        data = encode_line(entry)
        with self._lock:
            self.count += 1
            if self._file is None:
                self._file = self._open()
            self._file.write(data)

    def reject(
        self,
        *,
        position: int | None,
        source: str | None,
        line: int | None,
        id: str | None,
        errors: Iterable[FieldError | Mapping[str, Any] | str],
        record: Any,
        batch: int | None = None,
        index_in_batch: int | None = None,
    ) -> None:
        """Count one rejected record and, with a path, write it in the documented layout.

        :param position: The record's position in the whole source.
        :param source: The file it came from, or ``"records"``.
        :param line: Its line number (or item index), when known.
        :param id: Its id (``orderId`` for cost resources), when known.
        :param errors: Why it was rejected: ``FieldError`` objects, dicts with ``path``/``message``/
            ``value``, or plain messages.
        :param record: The record as read (a dict or a model), or the raw text of a malformed line.
        :param batch: The 0-based number of the batch it was sent in, if it was sent.
        :param index_in_batch: Its index in that batch, if it was sent.
        """
        entry: dict[str, Any] = {"position": position, "source": source, "line": line}
        if batch is not None:
            entry["batch"] = batch
        if index_in_batch is not None:
            entry["index_in_batch"] = index_in_batch
        entry["id"] = id
        entry["errors"] = [_error_dict(e) for e in errors]
        entry["record"] = record
        self.write(entry)

    def write_unreadable(self, item: SourceRecord, id: str | None = None) -> None:
        """Record a line the reader could not parse (``item.error`` set), with its raw text.

        :param item: The error record from a reader.
        :param id: Its id, if one could be guessed.
        """
        self.reject(
            position=item.position,
            source=item.source,
            line=item.line,
            id=id,
            errors=[FieldError("", item.error or "unreadable")],
            record=item.raw,
        )

    def _open(self) -> IO[bytes]:
        assert self.path is not None
        # Object stores have no real folders; some refuse mkdir, which is fine.
        with contextlib.suppress(FileExistsError, NotImplementedError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path.open("wb")

    def close(self) -> None:
        """Flush and close the file, if one was opened."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
