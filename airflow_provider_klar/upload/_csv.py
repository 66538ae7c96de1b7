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

from airflow_provider_klar.upload._record import SourceRecord, cut

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
    try:
        return int(stripped)
    except ValueError:
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


def _first_row(reader: Any) -> list[str] | None:
    """Return the first row that is not blank (the header), or ``None`` for an empty file."""
    for row in reader:
        if any(cell.strip() for cell in row):
            return list(row)
    return None


def iter_csv(
    stream: IO[bytes], source: str, start: int, resource: str, api_version: str | None
) -> Iterator[SourceRecord]:
    """Yield one record per CSV row, the first row naming the columns.

    A row with the wrong number of cells, or a number column that holds no number, is an error
    record with the row's first line number. Blank rows (also ``,,,``) are skipped.

    :param stream: The binary stream (already decompressed); UTF-8, with or without a BOM.
    :param source: The file's display name.
    :param start: The position of the first record.
    :param resource: The flat Klar resource whose model types the columns.
    :param api_version: Its API version.
    """
    types = column_types(resource, api_version)
    # newline="" lets the csv module see the line ends inside quoted cells itself.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")  # type: ignore[type-var]
    reader = csv.reader(text, strict=True)
    position = start
    try:
        header = _first_row(reader)
        if header is None:
            return
        header_line = reader.line_num
        names = [name.strip() for name in header]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates or "" in names:
            what = f"duplicate columns {duplicates}" if duplicates else "a column without a name"
            yield SourceRecord(
                position,
                source,
                header_line,
                None,
                f"line {header_line}: the header has {what}",
                _row_text(header),
            )
            return
        columns = [(name, types.get(name, "string"), _converter(types.get(name))) for name in names]
        width = len(names)
        previous = reader.line_num
        while True:
            first_line = previous + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield SourceRecord(
                    position, source, first_line, None, f"line {first_line}: bad CSV row: {exc}"
                )
                position += 1
                if reader.line_num == previous:
                    return
                previous = reader.line_num
                continue
            previous = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != width:
                message = f"line {first_line}: expected {width} columns ({', '.join(names)}), got {len(row)}"
                yield SourceRecord(position, source, first_line, None, message, _row_text(row))
                position += 1
                continue
            record, problem = _convert(columns, row, first_line)
            if problem is None:
                yield SourceRecord(position, source, first_line, record)
            else:
                yield SourceRecord(position, source, first_line, None, problem, _row_text(row))
            position += 1
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        line = (reader.line_num or 0) + 1
        yield SourceRecord(position, source, line, None, f"line {line}: cannot read the file: {exc}")
    finally:
        # Leave the underlying stream open for its owner to close.
        text.detach()
