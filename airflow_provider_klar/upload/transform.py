"""``transform=``: a function applied to every source record before validation.

It turns a source's own shape into Klar's (snake_case export columns into camelCase fields, a flat
row into a nested order...). The function gets each record as the reader produced it (a dict, or the
model given in ``records=``) and returns the record to send, a dict or a pydantic model. When it
raises, or returns something else, that record is rejected with the reason (its row, line or index
named as for any rejected record) and the upload goes on with the next one.

A record read from a JSON Lines file normally travels with its line's bytes, which are sent as read
when validation proves them to be exactly what Klar gets. A transformed record is no longer those
bytes, so the wrapper drops them and the record is encoded from the returned dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from airflow_provider_klar.upload._record import SourceRecord, cut, parsed

__all__ = ["TRANSFORM_FAILED", "TransformedSource", "apply_transform"]

#: How the error of a record whose transform failed starts (after where it is).
TRANSFORM_FAILED = "transform= failed"


def _text(record: Any) -> str:
    """The record as JSON text, for the rejected file (and so its id can still be found in it)."""
    dump = getattr(record, "model_dump", None)
    if dump is not None:
        record = dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return json.dumps(record, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(record)


def _where(src: SourceRecord) -> str:
    # Error texts of the readers start with where the record is: "line 17", "row 3", "item 0".
    if src.line is None or src.source == "records":
        return f"record {src.position}"
    if src.source.startswith("query "):
        return f"row {src.line}"
    if src.source.lower().removesuffix(".gz").endswith(".json"):
        return f"item {src.line}"
    return f"line {src.line}"


class TransformedSource(Iterator[SourceRecord]):
    """A source whose every readable record went through ``transform``; see :func:`apply_transform`.

    :param source: The records as read.
    :param transform: The function.
    """

    def __init__(self, source: Iterator[SourceRecord], transform: Callable[[Any], Any]) -> None:
        self._source = source
        self._transform = transform
        self.name = getattr(transform, "__name__", None) or type(transform).__name__

    def __iter__(self) -> TransformedSource:
        return self

    def __next__(self) -> SourceRecord:
        src = parsed(next(self._source))  # a line or array item read lazily is parsed here
        if src.error is not None:
            return src  # nothing to transform: it was not read
        try:
            out = self._transform(src.record)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split()) or '(no message)'}"
            return self._failed(src, f"{self.name} raised {cut(reason, 1000)}")
        if not isinstance(out, Mapping) and not hasattr(out, "model_dump"):
            return self._failed(
                src, f"{self.name} returned {type(out).__name__}; it must return the record, a dict"
            )
        # The line's bytes (raw) are dropped: they are the record before the transform, not after.
        return SourceRecord(src.position, src.source, src.line, out)

    def _failed(self, src: SourceRecord, reason: str) -> SourceRecord:
        message = f"{_where(src)}: {TRANSFORM_FAILED}: {reason}"
        return SourceRecord(src.position, src.source, src.line, None, message, cut(_text(src.record)))

    def close(self) -> None:
        """Close the underlying source (its open file or database cursor)."""
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def apply_transform(source: Iterator[SourceRecord], transform: Callable[[Any], Any]) -> TransformedSource:
    """Return ``source`` with ``transform`` applied to every record that was read.

    :param source: The records as a reader yields them.
    :param transform: Called with each record (a dict or a model); returns the record to send. An
        exception in it, or a return value that is not a dict or model, rejects that record only.
    """
    return TransformedSource(iter(source), transform)
