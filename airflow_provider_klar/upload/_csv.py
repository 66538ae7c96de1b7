"""CSV reader for the flat resources, typing each column from the resource's model.

Column types come from one place, :func:`column_types`: the JSON Schema of the model
(``airflow_provider_klar.models.json_schema``). Properties typed ``number``/``integer`` are parsed as
numbers (``int`` when the text is integral, else ``float``), ``boolean`` as booleans; everything else,
ids included, stays a string, and so do columns the model does not know. An empty cell omits the field.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from airflow_provider_klar.upload._json import BOM as _BOM
from airflow_provider_klar.upload._record import SourceRecord, cut, source_error

Converter = Callable[[str], Any]


def parse_number(text: str) -> int | float:
    """Parse a CSV cell as a JSON number: ``int`` for integral text (``"12"``), else ``float``.

    :param text: The cell's text.
    :raises ValueError: When the text is not a finite decimal number (``"1,5"``, ``"nan"``, ``"1_0"``).
    """
    stripped = text.strip()
    # Python accepts "1_000" and "inf"; neither is a number in a data file.
    if "_" in stripped:
        raise ValueError(text)
    # Text without a point or an exponent is an int or no number at all (float() would add only
    # "inf" and "nan"): asking int() first would raise for every price, which costs a microsecond.
    if "." not in stripped and "e" not in stripped and "E" not in stripped:
        return int(stripped)
    value = float(stripped)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def parse_boolean(text: str) -> bool:
    """Parse a CSV cell as a boolean (``true``/``false``, ``1``/``0``, ``yes``/``no``).

    :param text: The cell's text.
    :raises ValueError: For any other text.
    """
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def _types_of(node: Mapping[str, Any], defs: Mapping[str, Any], depth: int = 0) -> set[str]:
    if depth > 5:
        return set()
    kind = node.get("type")
    found = {kind} if isinstance(kind, str) else set(kind or ())
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found |= _types_of(defs.get(ref.rsplit("/", 1)[1], {}), defs, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        for option in node.get(key, ()):
            found |= _types_of(option, defs, depth + 1)
    return found


def types_from_schema(schema: Mapping[str, Any]) -> dict[str, str]:
    """Map each top-level property of a JSON Schema to ``number``, ``boolean`` or ``string``.

    :param schema: A model's JSON Schema (by alias).
    """
    defs = schema.get("$defs", {})
    types: dict[str, str] = {}
    for name, prop in schema.get("properties", {}).items():
        kinds = _types_of(prop, defs)
        if kinds & {"number", "integer"}:
            types[name] = "number"
        elif "boolean" in kinds and "string" not in kinds:
            types[name] = "boolean"
        else:
            types[name] = "string"
    return types


@functools.lru_cache(maxsize=32)
def column_types(resource: str, api_version: str | None = None) -> Mapping[str, str]:
    """Return the column types of ``resource``'s CSV files: ``{"productCogs": "number", ...}``.

    :param resource: A flat Klar resource.
    :param api_version: Its API version (default: the resource's default).
    """
    from airflow_provider_klar.models import json_schema
    from airflow_provider_klar.resources import resolve_version

    return types_from_schema(json_schema(resource, resolve_version(resource, api_version)))


def _converter(kind: str | None) -> Converter | None:
    if kind == "number":
        return parse_number
    if kind == "boolean":
        return parse_boolean
    return None


def _row_text(row: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return cut(buffer.getvalue())


def _convert(
    columns: list[tuple[str, str, Converter | None]], row: list[str], line: int
) -> tuple[dict[str, Any], str | None]:
    record: dict[str, Any] = {}
    for (name, kind, convert), cell in zip(columns, row, strict=True):
        if convert is None:
            if cell != "":
                record[name] = cell
        elif cell.strip():
            try:
                record[name] = convert(cell)
            except ValueError:
                return record, f"line {line}: column {name!r}: {cell!r} is not a {kind}"
    return record, None


class _Lines:
    """The lines of a binary stream, each decoded on its own, for ``csv.reader``; remembers what it saw.

    Decoding line by line keeps a byte that is not UTF-8 to its own line (replaced by U+FFFD, which
    is never a quote, comma or line end, so the CSV structure around it stays intact) and keeps the
    line count true, also inside quoted cells that span lines. Lines end at ``\\n``, ``\\r\\n`` or a lone
    ``\\r`` (old spreadsheet exports), as the csv module expects.
    """

    __slots__ = ("_lines", "ended", "number", "problems")

    def __init__(self, stream: IO[bytes]) -> None:
        #: How many lines were handed out.
        self.number = 0
        #: For the lines handed out since :meth:`mark`: (line number, why it is not UTF-8 or has a BOM).
        self.problems: list[tuple[int, str]] = []
        #: Whether the stream has no more lines.
        self.ended = False
        # A generator, not a __next__ method: the csv module calls it once per line, at C speed.
        self._lines = self._decode(stream)

    def mark(self) -> None:
        """Forget the problems seen so far (called before each row)."""
        if self.problems:  # most rows have none: no new list per row
            self.problems = []

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def _decode(self, stream: IO[bytes]) -> Iterator[str]:
        number = 0
        for raw in stream:
            cr = raw.find(b"\r")
            # A binary stream splits at \n only: lines ending in a lone \r are split here (rarely needed).
            pieces = (raw,) if cr == -1 or cr == len(raw) - 2 else raw.splitlines(keepends=True)
            for piece in pieces:
                number += 1
                self.number = number
                line = piece
                if line.startswith(_BOM):
                    line = line[len(_BOM) :]
                    if number != 1:
                        self.problems.append((number, _BOM_PROBLEM))
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    where = f"byte {bad.start + 1} of the line"
                    problem = f"byte 0x{line[bad.start]:02X} at {where} is not UTF-8; save the file as UTF-8"
                    self.problems.append((number, problem))
                    yield line.decode("utf-8", "replace")
        self.ended = True


_BOM_PROBLEM = (
    "starts with a byte order mark (BOM, bytes EF BB BF), as where files were concatenated; only the "
    "first line of a file may; remove it"
)
_STREAM_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError)


def _broken(exc: BaseException) -> str:
    if isinstance(exc, (EOFError, gzip.BadGzipFile, zlib.error)):
        return f"the file is not valid gzip or is cut short ({type(exc).__name__}: {exc})"
    return f"reading the file failed ({type(exc).__name__}: {exc})"


def _header(reader: Any, lines: _Lines, source: str, position: int) -> list[str] | None:
    """Read the first row that is not blank: the column names; ``None`` for a file without one."""
    while True:
        lines.mark()
        first_line = lines.number + 1
        try:
            row = next(reader)
        except StopIteration:
            return None
        if any(cell.strip() for cell in row):
            break
    where = f"line {first_line} (the header)"
    if lines.problems:
        raise source_error(source, where, lines.problems[0][1], position=position, line=lines.problems[0][0])
    names = [name.strip() for name in row]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates or "" in names:
        what = f"duplicate columns {duplicates}" if duplicates else "a column without a name"
        raise source_error(source, where, f"the header has {what}", position=position, line=first_line)
    return names


def iter_csv(
    stream: IO[bytes], source: str, start: int, resource: str, api_version: str | None
) -> Iterator[SourceRecord]:
    """Yield one record per CSV row, the first row naming the columns.

    A row with the wrong number of cells, a number column that holds no number, a byte that is not
    UTF-8 or a byte order mark opening a line after the first is an error record with the row's
    first line number (true also after quoted cells that span lines). Blank rows (also ``,,,``) are
    skipped.

    :param stream: The binary stream (already decompressed); UTF-8, with or without a BOM.
    :param source: The file's display name.
    :param start: The position of the first record.
    :param resource: The flat Klar resource whose model types the columns.
    :param api_version: Its API version.
    :raises KlarSourceError: When the header cannot be read, a quoted cell never closes, or the gzip
        stream or the storage fails; the rows before were yielded.
    """
    types = column_types(resource, api_version)
    lines = _Lines(stream)
    # The lines keep their ends, so the csv module sees the line ends inside quoted cells itself.
    reader = csv.reader(lines, strict=True)
    position = start
    try:
        names = _header(reader, lines, source, position)
        if names is None:
            return
        columns = [(name, types.get(name, "string"), _converter(types.get(name))) for name in names]
        while True:
            lines.mark()
            first_line = lines.number + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if lines.ended:
                    # The parser read to the end of the file looking for the end of a quoted cell.
                    raise source_error(
                        source,
                        f"line {first_line}",
                        f"bad CSV row: {exc} (a quoted cell opened here never closes)",
                        position=position,
                        line=first_line,
                    ) from exc
                yield SourceRecord(
                    position, source, first_line, None, f"line {first_line}: bad CSV row: {exc}"
                )
                position += 1
                continue
            if lines.problems:
                number, problem = lines.problems[0]
                message = f"line {number}: {problem}"
                yield SourceRecord(position, source, first_line, None, message, _row_text(row))
            elif not any(map(str.strip, row)):
                continue
            else:
                yield _row_record(columns, row, position, source, first_line)
            position += 1
    except _STREAM_ERRORS as exc:
        raise source_error(
            source, f"after line {lines.number}", _broken(exc), position=position, line=lines.number + 1
        ) from exc


def _row_record(
    columns: list[tuple[str, str, Converter | None]], row: list[str], position: int, source: str, line: int
) -> SourceRecord:
    if len(row) != len(columns):
        names = ", ".join(name for name, _, _ in columns)
        message = f"line {line}: expected {len(columns)} columns ({names}), got {len(row)}"
        return SourceRecord(position, source, line, None, message, _row_text(row))
    record, problem = _convert(columns, row, line)
    if problem is None:
        return SourceRecord(position, source, line, record)
    return SourceRecord(position, source, line, None, problem, _row_text(row))
