"""Reader for Parquet files (used through :mod:`~airflow_provider_klar.upload.sources`), with pyarrow.

A Parquet file is read in slices of :data:`BATCH_ROWS` rows, one row group after the other, so memory
holds a slice of one row group at a time whatever the file size. Each row becomes one record:

- a column is a field of that name; ``null`` leaves the field out (Klar rejects most fields sent as
  null), in nested structs too;
- structs become JSON objects, lists become arrays, maps become objects (keys as text);
- timestamps become Unix seconds (an integer when whole, a timestamp without time zone is taken as UTC),
  dates the Unix seconds of their midnight UTC, decimals numbers (integers when whole), binary columns
  UTF-8 text; a value JSON cannot carry (a time of day, a duration, bytes that are not UTF-8) rejects
  its row, naming the column.

``line`` is the 1-based row number in the file, so a rejected record is named ``row 1500 of
orders.parquet``. A file that is not Parquet, or breaks while being read, raises
:class:`~airflow_provider_klar.exceptions.KlarSourceError` naming the file and the row reached.

pyarrow is an optional dependency (``pip install 'airflow-provider-klar[parquet]'``), imported only when a
Parquet file is read.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import IO, Any

from airflow_provider_klar.exceptions import KlarConfigurationError
from airflow_provider_klar.upload._record import SourceRecord, cut, source_error

__all__ = ["BATCH_ROWS", "check_parquet", "iter_parquet"]

#: Rows turned into Python objects at once: small enough to keep memory flat, large enough that
#: pyarrow's per-call cost does not show.
BATCH_ROWS = 1024

Converter = Callable[[Any], Any]

# Arrow's time units, as divisors to seconds.
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_SECONDS_PER_DAY = 86_400


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise KlarConfigurationError(
            "Reading Parquet files needs pyarrow: pip install 'airflow-provider-klar[parquet]' "
            "(or pip install pyarrow) on the workers."
        ) from None
    return pyarrow, pyarrow.parquet


def check_parquet(gzipped: bool, name: str) -> None:
    """Check, before anything is read, that a Parquet file can be read at all.

    :param gzipped: Whether the file name ends in ``.gz``.
    :param name: The file's display name.
    :raises KlarConfigurationError: When pyarrow is missing, or for a gzipped Parquet file.
    """
    if gzipped:
        raise KlarConfigurationError(
            f"{name}: a Parquet file compresses its own pages (snappy, zstd, gzip...) and cannot be read "
            f"through an outer .gz; store it as plain .parquet."
        )
    _pyarrow()


# -- how each Arrow type becomes JSON ---------------------------------------------------------------


def _seconds(per_second: int) -> Converter:
    def convert(value: int) -> int | float:
        # Whole seconds as integers (Klar's timestamps are Unix seconds); sub-second precision kept.
        whole, rest = divmod(value, per_second)
        return whole if rest == 0 else value / per_second

    return convert


def _days(value: int) -> int:
    return value * _SECONDS_PER_DAY


def _number(value: Decimal) -> int | float:
    if not value.is_finite():
        raise ValueError(f"{value} is not a number JSON can carry")
    # Whole amounts stay integers (quantities, grams); the rest become floats, as Klar's numbers are.
    return int(value) if value == value.to_integral_value() else float(value)


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"binary value is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _refuse(kind: str) -> Converter:
    def convert(value: Any) -> Any:
        raise ValueError(
            f"a {kind} value cannot be sent to Klar; convert the column before exporting "
            f"(to text, a number, or Unix seconds), or with transform="
        )

    return convert


def _struct(fields: list[tuple[str, Converter | None]]) -> Converter:
    converting = [(name, child) for name, child in fields if child is not None]

    def convert(value: dict[str, Any]) -> dict[str, Any]:
        # The dict is pyarrow's fresh copy: changed in place, and rebuilt only when it holds a null
        # (a C-level scan), since most structs of a real export have none.
        for name, child in converting:
            item = value[name]
            if item is not None:
                value[name] = child(item)
        if None in value.values():
            return {name: item for name, item in value.items() if item is not None}
        return value

    return convert


def _list(child: Converter) -> Converter:
    def convert(value: list[Any]) -> list[Any]:
        return [None if item is None else child(item) for item in value]

    return convert


def _map(key: Converter | None, item: Converter | None) -> Converter:
    def convert(value: list[tuple[Any, Any]]) -> dict[str, Any]:
        # A map is a JSON object: keys as text, null entries left out like null struct fields.
        return {
            str(k if key is None else key(k)): (v if item is None else item(v))
            for k, v in value
            if v is not None
        }

    return convert


def plan(pa: Any, kind: Any) -> tuple[Any, Converter | None]:
    """Return how a column of Arrow type ``kind`` becomes JSON values.

    The first part is the Arrow type to cast the column to before it is turned into Python objects
    (temporal types to plain integers: pyarrow cannot turn a nanosecond timestamp into a ``datetime``);
    the second the function applied to each non-null Python value, or ``None`` when it is JSON already.

    :param pa: The ``pyarrow`` module.
    :param kind: The column's Arrow type.
    """
    types = pa.types
    if types.is_timestamp(kind):
        return pa.int64(), _seconds(_PER_SECOND[kind.unit])
    if types.is_date32(kind):
        return pa.int32(), _days
    if types.is_date64(kind):
        return pa.int64(), _seconds(1_000)
    if types.is_decimal(kind):
        return kind, _number
    if types.is_float16(kind):
        return pa.float64(), None
    if types.is_binary(kind) or types.is_large_binary(kind) or types.is_fixed_size_binary(kind):
        return kind, _text
    if types.is_time(kind) or types.is_duration(kind) or types.is_interval(kind):
        name = "time of day" if types.is_time(kind) else "duration" if types.is_duration(kind) else "interval"
        return pa.int64() if not types.is_interval(kind) else kind, _refuse(name)
    if types.is_dictionary(kind):
        return plan(pa, kind.value_type)
    if types.is_map(kind):
        key_type, key = plan(pa, kind.key_type)
        item_type, item = plan(pa, kind.item_type)
        return pa.map_(key_type, item_type), _map(key, item)
    if types.is_struct(kind):
        children = [plan(pa, field.type) for field in kind]
        target = pa.struct([field.with_type(t) for field, (t, _) in zip(kind, children, strict=True)])
        return target, _struct([(field.name, c) for field, (_, c) in zip(kind, children, strict=True)])
    if types.is_list(kind) or types.is_large_list(kind) or types.is_fixed_size_list(kind):
        child_type, child = plan(pa, kind.value_type)
        field = kind.value_field.with_type(child_type)
        target = pa.large_list(field) if types.is_large_list(kind) else pa.list_(field)
        return target, None if child is None else _list(child)
    return kind, None


# -- reading ------------------------------------------------------------------------------------


def iter_parquet(stream: IO[bytes], source: str, start: int) -> Iterator[SourceRecord]:
    """Yield one record per row of a Parquet file, reading :data:`BATCH_ROWS` rows at a time.

    :param stream: The file, opened for binary reading; it must be seekable (local files and the
        object storage file systems are).
    :param source: The file's display name.
    :param start: The position of the first record.
    :raises KlarSourceError: When the file is not Parquet, or breaks while being read.
    """
    pa, pq = _pyarrow()
    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = f"not a readable Parquet file ({exc})"
        raise source_error(source, "before its first row", reason, position=start) from exc
    schema = parquet.schema_arrow
    columns = [(field.name, *plan(pa, field.type)) for field in schema]
    row = 0
    batches = parquet.iter_batches(batch_size=BATCH_ROWS, use_pandas_metadata=False)
    while True:
        try:
            batch = next(batches, None)
            if batch is None:
                return
            values = [
                (name, (column if column.type == target else column.cast(target)).to_pylist(), convert)
                for (name, target, convert), column in zip(columns, batch.columns, strict=True)
            ]
        except (pa.ArrowException, OSError, ValueError) as exc:
            reason = f"cannot read the file ({type(exc).__name__}: {exc})"
            where = f"after row {row}"
            raise source_error(source, where, reason, position=start + row, line=row + 1) from exc
        for index in range(batch.num_rows):
            row += 1
            yield _record(values, index, start + row - 1, source, row)


def _record(
    columns: list[tuple[str, list[Any], Converter | None]], index: int, position: int, source: str, row: int
) -> SourceRecord:
    record: dict[str, Any] = {}
    for name, values, convert in columns:
        value = values[index]
        if value is None:
            continue  # a null leaves the field out: Klar rejects a null where it expects a value
        if convert is not None:
            try:
                value = convert(value)
            except ValueError as exc:
                shown = {n: v[index] for n, v, _ in columns if v[index] is not None}
                raw = cut(json.dumps(shown, default=_shown, ensure_ascii=False))
                return SourceRecord(position, source, row, None, f"row {row}: column {name}: {exc}", raw)
        record[name] = value
    return SourceRecord(position, source, row, record)


def _shown(value: Any) -> Any:
    # Only for the rejected file's text of a row that could not become a record.
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (dt.date, dt.time, dt.timedelta, Decimal)):
        return str(value)
    return repr(value)
