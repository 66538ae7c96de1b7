"""The JSON Lines reader, and what it shares with the JSON array reader (:mod:`._array`).

A JSON Lines file is read line by line as bytes: a line that is not a JSON object (a syntax error, a
byte that is not UTF-8, ``NaN``, a byte order mark opening a later line) is rejected as that line, with
its true line number, and the file is read on; a file whose gzip stream or storage fails ends the read
with :class:`~airflow_provider_klar.exceptions.KlarSourceError`. JSON array files are read by
:mod:`~airflow_provider_klar.upload._array`.

Read lazily (``lazy=True``, as uploads read), a line is handed on as its bytes, unparsed: the upload
checks them in one pass and parses them only when that fails.

A line in the layout of the provider's own rejected file (``position``, ``source``, ``errors``,
``record``...) stands for its ``record``: a fixed rejected file can be passed back as ``path=``.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from pydantic_core import from_json

from airflow_provider_klar._jsonsafe import MAX_DEPTH
from airflow_provider_klar.upload._record import UNPARSED, SourceRecord, cut, source_error

if TYPE_CHECKING:
    # Not imported at run time: the exceptions module imports Airflow, which validation workers must
    # not (see upload/parallel.py).
    from airflow_provider_klar.exceptions import KlarSourceError

#: Errors that mean the compressed stream itself is broken (cut short, or not gzip at all).
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, gzip.BadGzipFile, zlib.error)
#: Errors that end the reading of a stream: a broken gzip stream, or the storage failing (``OSError``).
STREAM_ERRORS: tuple[type[Exception], ...] = (*GZIP_ERRORS, OSError)
BOM = b"\xef\xbb\xbf"
#: The keys that mark a line of the provider's rejected file (see ``upload/rejected.py``).
_REJECTED_KEYS = ("position", "source", "errors", "record")


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


def _reason(exc: BaseException, line: bytes) -> str:
    """Say why ``line`` is not JSON, from pydantic_core's error: where, and what to do when it is known."""
    # pydantic_core says "... at line 1 column 9" (a byte column): the line is always 1 within one line.
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        # Named before any syntax error: a byte that is not UTF-8 throws the parser off anywhere.
        where = f"byte {bad.start + 1} of the line"
        return f"byte 0x{line[bad.start]:02X} at {where} is not UTF-8; save the file as UTF-8"
    text = str(exc)
    head, found, column_text = text.rpartition(" at line 1 column ")
    if not (found and column_text.isdigit()):
        return f"invalid JSON: {text}"
    column = int(column_text) or 1
    if head == "recursion limit exceeded":
        return (
            f"nested more than {MAX_DEPTH} levels deep (at column {column}); no Klar object is nested more "
            f"than a few levels: leave the deep field out"
        )
    if head in ("expected value", "invalid number"):
        for token in (b"NaN", b"Infinity", b"-Infinity"):
            start = column - (2 if token.startswith(b"-") else 1)
            if line[start:].startswith(token):
                return (
                    f"{token.decode()} is not a JSON number (at column {start + 1}); Klar cannot store it: "
                    f"write null or leave the field out"
                )
    if "surrogate" in head or "hex escape" in head:
        return (
            f"invalid JSON: {head} at column {column} (a \\u escape of half a UTF-16 pair, which is not "
            f"a character)"
        )
    return f"invalid JSON: {head} at column {column}"


def _broken(exc: BaseException) -> str:
    if isinstance(exc, GZIP_ERRORS):
        return f"the file is not valid gzip or is cut short ({type(exc).__name__}: {exc})"
    return f"reading the file failed ({type(exc).__name__}: {exc})"


def iter_json_lines(
    stream: IO[bytes], source: str, start: int, *, lazy: bool = False
) -> Iterator[SourceRecord]:
    """Yield one record per non-blank line; a line that is not a JSON object is an error record.

    :param stream: The binary stream (already decompressed).
    :param source: The file's display name.
    :param start: The position of the first record.
    :param lazy: Yield each line unparsed (its record :data:`~._record.UNPARSED`, its bytes in ``raw``):
        the upload checks the bytes in one pass, and parses them only when that fails. A byte order
        mark opening the file is removed all the same.
    :raises KlarSourceError: When the gzip stream or the storage fails; the lines before were yielded.
    """
    position = start
    number = 0
    try:
        # Lines come at C speed from blocks of 1 MiB (see lines); each is decoded on its own, so a bad
        # byte costs its line only and every line number stays true.
        for number, line in enumerate(lines(stream), 1):
            if line.isspace():
                continue
            yield (lazy_line if lazy else parse_json_line)(line, number, position, source)
            position += 1
    except STREAM_ERRORS as exc:
        raise stream_error(source, number, position, exc) from exc


#: Bytes read at a time. Each read releases the GIL, which the threads sending batches then take:
#: reading in the 8 KiB a file object buffers (two or three orders) cost 15 to 25% more CPU per record.
_BLOCK = 1 << 20


def lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Yield the lines of ``stream`` as iterating it would (``\n`` kept, the last one maybe without).

    Reads with ``read1`` where the stream has it (one read of the storage or the gzip stream per call),
    so that what was read before a failing read is still yielded.
    """
    read = getattr(stream, "read1", None) or stream.read
    rest = b""
    while block := read(_BLOCK):
        # BytesIO shares the bytes it is given and splits lines in C.
        buffer = io.BytesIO(block)
        if rest:
            # The line the previous block cut, completed (not the whole block copied onto it).
            rest += buffer.readline()
            if not rest.endswith(b"\n"):
                continue  # a line longer than the block
            yield rest
            rest = b""
        for line in buffer:
            if not line.endswith(b"\n"):
                rest = line  # cut by the block's end: completed by the next block
                break
            yield line
    if rest:
        yield rest


def is_rejected_entry(keys: Any) -> bool:
    """Whether a JSON object with these keys is a line of the provider's rejected file.

    :param keys: The object, or the names of its keys (anything ``in`` works on).
    """
    return "record" in keys and all(key in keys for key in _REJECTED_KEYS)


def lazy_line(line: bytes, number: int, position: int, source: str) -> SourceRecord:
    """Return one non-blank line of a JSON Lines file unparsed (see :func:`iter_json_lines`'s ``lazy``).

    A byte order mark opening the file's first line is removed, as the eager reader removes it.

    :param line: The line's bytes as read.
    :param number: Its 1-based line number in the file.
    :param position: Its position in the whole source.
    :param source: The file's display name.
    """
    if number == 1 and line.startswith(BOM):
        line = line[len(BOM) :]
    return SourceRecord(position, source, number, UNPARSED, None, line)


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
        if not line.startswith(BOM):
            return _malformed(position, source, number, _reason(exc, line), line)
        if number != 1:
            # Only a file's first line may open with a BOM; one further on usually means files were
            # concatenated. Named as such, since the parser would only say "expected value at column 1".
            problem = (
                "starts with a byte order mark (BOM, bytes EF BB BF), as where files were concatenated; "
                "only the first line of a file may; remove it"
            )
            return _malformed(position, source, number, problem, line)
        line = line[len(BOM) :]
        try:
            record = from_json(line, allow_inf_nan=False, cache_strings="keys")
        except ValueError as exc_after_bom:
            return _malformed(position, source, number, _reason(exc_after_bom, line), line)
    if type(record) is dict:
        if is_rejected_entry(record):
            return _unwrap(record, number, position, source)
        # The line's own bytes travel along: when the validator proves the parsed dict is exactly
        # what Klar gets, they are sent as they are instead of encoding the dict again.
        return SourceRecord(position, source, number, record, None, line)
    return _malformed(position, source, number, f"expected a JSON object, got {json_type(record)}", line)


def _malformed(position: int, source: str, number: int, problem: str, line: bytes | str) -> SourceRecord:
    raw = line if isinstance(line, str) else _raw(line)
    return SourceRecord(position, source, number, None, f"line {number}: {problem}", raw)


def _unwrap(entry: dict[str, Any], number: int, position: int, source: str) -> SourceRecord:
    """Read a line of the provider's rejected file as the record it holds (fixed by now, or not)."""
    inner = entry["record"]
    if type(inner) is dict:
        # No raw bytes: the record is encoded again, the rejected file's layout is not sent.
        return SourceRecord(position, source, number, inner)
    if isinstance(inner, str):
        # The raw text of a line that was malformed; a BOM it began with was the file's problem.
        text = inner.removeprefix("\ufeff")
        try:
            record = from_json(
                text.encode("utf-8", "surrogatepass"), allow_inf_nan=False, cache_strings="keys"
            )
        except ValueError as exc:
            reason = _reason(exc, text.encode("utf-8", "replace"))
            problem = f"the rejected record's text is still not JSON: {reason}"
            return _malformed(position, source, number, problem, text)
        if type(record) is dict:
            return SourceRecord(position, source, number, record)
        problem = f"the rejected record's text is not a JSON object but {json_type(record)}"
        return _malformed(position, source, number, problem, text)
    problem = f"a line of a rejected file whose record is {json_type(inner)}, not a JSON object"
    return _malformed(position, source, number, problem, cut(repr(inner)))


def stream_error(source: str, number: int, position: int, exc: BaseException) -> KlarSourceError:
    """Return the error for a JSON Lines stream that broke after line ``number``; the caller raises it.

    :param source: The file's display name.
    :param number: The number of the last line read whole (0 when none was).
    :param position: The position the next record would have had.
    :param exc: The decompression or storage error.
    """
    return source_error(source, f"after line {number}", _broken(exc), position=position, line=number + 1)


#: The longest malformed line kept whole for the rejected file (characters): enough for any real record,
#: so that the file can be fixed and sent again; a longer line is cut (and stays malformed).
RAW_LIMIT = 1_000_000


def _raw(line: bytes) -> str:
    return cut(line.decode("utf-8", "replace").rstrip("\r\n"), RAW_LIMIT)
