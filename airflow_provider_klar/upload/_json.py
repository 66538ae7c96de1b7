"""Readers for JSON Lines and JSON array files (used through :mod:`~airflow_provider_klar.upload.sources`)."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from typing import IO, Any

import ijson

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
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at column {exc.start + 1}"
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    return f"invalid JSON: {exc}"


def _broken(exc: BaseException) -> str:
    return f"the file is not valid gzip or is cut short ({type(exc).__name__}: {exc})"


def iter_json_lines(stream: IO[bytes], source: str, start: int) -> Iterator[SourceRecord]:
    """Yield one record per non-blank line; a line that is not a JSON object is an error record.

    :param stream: The binary stream (already decompressed).
    :param source: The file's display name.
    :param start: The position of the first record.
    """
    loads = json.loads
    position = start
    number = 0
    try:
        # Iterating a binary file yields bytes lines at C speed; json.loads takes bytes directly.
        for number, line in enumerate(stream, 1):
            if line.isspace():
                continue
            try:
                record = loads(line)
            except (ValueError, RecursionError) as exc:
                yield SourceRecord(
                    position, source, number, None, f"line {number}: {_reason(exc)}", _raw(line)
                )
            else:
                if type(record) is dict:
                    yield SourceRecord(position, source, number, record)
                else:
                    problem = f"line {number}: expected a JSON object, got {json_type(record)}"
                    yield SourceRecord(position, source, number, None, problem, _raw(line))
            position += 1
    except GZIP_ERRORS as exc:
        yield SourceRecord(position, source, number + 1, None, f"line {number + 1}: {_broken(exc)}")


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


def _array_items(head: bytes, stream: IO[bytes], prefix: str) -> Iterator[Any]:
    """Yield the values at ``prefix``; on a syntax error, first yield every value completed before it.

    ijson's push interface is used because its pull interface drops the values parsed from the
    chunk that holds the error.
    """
    done: list[Any] = ijson.sendable_list()
    # use_float: plain floats instead of Decimal (ints stay ints), as json.loads gives.
    parser = ijson.items_coro(done, prefix, use_float=True)
    chunk = head
    try:
        while chunk:
            parser.send(chunk)
            yield from done
            del done[:]
            chunk = stream.read(_CHUNK)
        parser.close()
    except ijson.JSONError:
        yield from done
        raise
    yield from done


_CHUNK = 64 * 1024


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
        for item in _array_items(head, stream, "item" if first == ord("[") else ""):
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
