"""Readers for JSON Lines and JSON array files (used through :mod:`~airflow_provider_klar.upload.sources`)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import IO, Any

import ijson
from pydantic_core import from_json

from airflow_provider_klar.upload._record import SourceRecord, cut

#: Errors that mean the compressed stream itself is broken (cut short, or not gzip at all).
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, gzip.BadGzipFile, zlib.error)
_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


def json_type(value: Any) -> str:
    """Name a decoded JSON value's type the way JSON does (``array``, ``string``, ``number``...)."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


def _reason(exc: BaseException) -> str:
    # pydantic_core says "... at line 1 column 9": the line is always 1 within one JSON line.
    text = str(exc)
    head, found, column = text.rpartition(" at line 1 column ")
    if found and column.isdigit():
        text = f"{head} at column {int(column) or 1}"
    return f"invalid JSON: {text}"


def _broken(exc: BaseException) -> str:
    return f"the file is not valid gzip or is cut short ({type(exc).__name__}: {exc})"


def iter_json_lines(stream: IO[bytes], source: str, start: int) -> Iterator[SourceRecord]:
    """Yield one record per non-blank line; a line that is not a JSON object is an error record.

    :param stream: The binary stream (already decompressed).
    :param source: The file's display name.
    :param start: The position of the first record.
    """
    position = start
    number = 0
    try:
        # Iterating a binary file yields bytes lines at C speed.
        for number, line in enumerate(stream, 1):
            if line.isspace():
                continue
            yield parse_json_line(line, number, position, source)
            position += 1
    except GZIP_ERRORS as exc:
        yield broken_stream(position, source, number, exc)


def parse_json_line(line: bytes, number: int, position: int, source: str) -> SourceRecord:
    """Read one non-blank line of a JSON Lines file (the step :func:`iter_json_lines` takes per line).

    :param line: The line's bytes as read.
    :param number: Its 1-based line number in the file.
    :param position: Its position in the whole source.
    :param source: The file's display name.
    """
    # pydantic_core's parser (Rust, shipped with pydantic) reads a 2 KB order in about 60% of
    # json.loads' time; it refuses NaN and Infinity, which are not JSON and which Klar cannot store.
    # Caching only the keys (which repeat in every record) and not the values is about 10% faster
    # than its default of caching both.
    try:
        record = from_json(line, allow_inf_nan=False, cache_strings="keys")
    except ValueError as exc:
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
            record, problem = _parse(line)
        else:
            record, problem = None, _reason(exc)
        if problem is not None:
            return SourceRecord(position, source, number, None, f"line {number}: {problem}", _raw(line))
    if type(record) is dict:
        # The line's own bytes travel along: when the validator proves the parsed dict is exactly
        # what Klar gets, they are sent as they are instead of encoding the dict again.
        return SourceRecord(position, source, number, record, None, line)
    problem = f"line {number}: expected a JSON object, got {json_type(record)}"
    return SourceRecord(position, source, number, None, problem, _raw(line))


def broken_stream(position: int, source: str, number: int, exc: BaseException) -> SourceRecord:
    """Return the error record for a compressed stream that broke after line ``number``.

    :param position: The position the next record would have had.
    :param source: The file's display name.
    :param number: The number of the last line read whole (0 when none was).
    :param exc: The decompression error.
    """
    return SourceRecord(position, source, number + 1, None, f"line {number + 1}: {_broken(exc)}")


def _parse(line: bytes) -> tuple[Any, str | None]:
    """Parse one line; return the value, or ``None`` and why it is not JSON."""
    try:
        return from_json(line, allow_inf_nan=False, cache_strings="keys"), None
    except ValueError as exc:
        return None, _reason(exc)


def _raw(line: bytes) -> str:
    return cut(line.decode("utf-8", "replace").rstrip("\r\n"))


def _first_significant(stream: IO[bytes]) -> tuple[bytes, int | None]:
    """Read up to the first byte that is not whitespace (nor a BOM); return what was read and it."""
    head = b""
    while True:
        chunk = stream.read(4096)
        if not chunk:
            return head, None
        head += chunk
        if head.startswith(_BOM):
            head = head[len(_BOM) :]
        stripped = head.lstrip(_WHITESPACE)
        if stripped:
            return stripped, stripped[0]
        head = b""


class _Prefixed:
    """A read-only stream that first returns ``head`` (read to find where the JSON starts), then the rest."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            # ijson probes with read(0) whether the stream gives bytes or text.
            return b""
        if self._head:
            # A short read is fine: parsers only stop at an empty one.
            data, self._head = self._head, b""
            return data
        return self._stream.read(size)


def iter_json_array(stream: IO[bytes], source: str, start: int) -> Iterator[SourceRecord]:
    """Yield the objects of a JSON array one by one (streamed with ijson), or one record for an object.

    ``line`` is the item's 0-based index. Items that are not objects are error records; a syntax error
    midway yields the records before it and one error record, then the file ends there.

    :param stream: The binary stream (already decompressed).
    :param source: The file's display name.
    :param start: The position of the first record.
    """
    count = 0
    try:
        head, first = _first_significant(stream)
        if first is None:
            return
        if first not in b"[{":
            shown = cut(head[:40].decode("utf-8", "replace"), 40)
            yield SourceRecord(
                start, source, 0, None, f"item 0: expected a JSON array of objects, found {shown!r}"
            )
            return
        prefix = "item" if first == ord("[") else ""
        # ijson's pull parser (C backend) yields every value completed before a syntax error.
        # use_float: plain floats instead of Decimal (ints stay ints), as json.loads gives.
        for item in ijson.items(_Prefixed(head, stream), prefix, use_float=True):
            if type(item) is dict:
                yield SourceRecord(start + count, source, count, item)
            else:
                problem = f"item {count}: expected a JSON object, got {json_type(item)}"
                yield SourceRecord(start + count, source, count, None, problem, cut(repr(item)))
            count += 1
    except ijson.JSONError as exc:
        reason = str(exc).splitlines()[0].strip() if str(exc) else type(exc).__name__
        yield SourceRecord(start + count, source, count, None, f"item {count}: invalid JSON: {reason}")
    except GZIP_ERRORS as exc:
        yield SourceRecord(start + count, source, count, None, f"item {count}: {_broken(exc)}")
