"""Source readers: turn ``records=`` or ``path=`` into a lazy stream of :class:`SourceRecord`.

Every reader is a generator that holds one record (one line, one CSV row, one array item) at a time,
so memory stays flat whatever the file size. A line that cannot be parsed is not an exception but a
:class:`SourceRecord` with :attr:`~SourceRecord.error` set and its line number, so the operator can count
it as rejected and carry on with the next line.

A source that stops being readable midway (a JSON array with a syntax error, a gzip file cut short, the
object storage failing while reading) raises
:class:`~airflow_provider_klar.exceptions.KlarSourceError` after the records before the break, naming the
file, where it broke, and the files after it that were not read either. An exception raised by the
iterable given as ``records=`` is passed on unchanged.

Configuration mistakes (an unknown extension, CSV for a nested resource) raise
:class:`~airflow_provider_klar.exceptions.KlarConfigurationError` (no retry helps) and missing input (no
file matches the pattern) :class:`~airflow_provider_klar.exceptions.KlarSourceNotFoundError` (retried: an
export may land late) when :func:`iter_path` is called, before a single record is read.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import logging
import os
import zlib
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import IO, Any

from airflow_provider_klar.exceptions import KlarConfigurationError, KlarSourceError, KlarSourceNotFoundError
from airflow_provider_klar.upload._array import iter_json_array
from airflow_provider_klar.upload._csv import iter_csv
from airflow_provider_klar.upload._json import iter_json_lines
from airflow_provider_klar.upload._parquet import check_parquet, iter_parquet
from airflow_provider_klar.upload._record import SourceRecord, cut, source_error

__all__ = [
    "FORMATS",
    "FileSource",
    "SourceRecord",
    "detect_format",
    "display_name",
    "iter_path",
    "iter_records",
    "iter_stream",
    "resolve_paths",
    "to_storage_path",
]

log = logging.getLogger(__name__)

#: The file formats the readers understand.
FORMATS = ("jsonl", "json", "csv", "parquet")

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_FORMAT_ALIASES = {
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "jsonlines": "jsonl",
    "json": "json",
    "csv": "csv",
    "parquet": "parquet",
}
_LOCAL_PROTOCOLS = ("", "file", "local")


def _record_type_error(item: Any) -> str | None:
    # A plain dict first: the check against the Mapping ABC costs more than the rest of the step.
    if type(item) is dict or isinstance(item, Mapping) or _is_model(item):
        return None
    return f"expected a dict or a pydantic model, got {type(item).__name__}"


def _is_model(item: Any) -> bool:
    # Duck-typed so that importing pydantic is not needed here (and pydantic v1 models still pass).
    return hasattr(item, "model_dump") or (hasattr(item, "dict") and hasattr(item, "__fields__"))


def iter_records(records: Iterable[Any]) -> Iterator[SourceRecord]:
    """Yield the records of ``records=`` one by one, without copying the iterable.

    Works with a list, any iterable or generator, and the lazy sequence Airflow 3 hands over for an
    ``XComArg``. Items that are lists are read as their records in turn, so the results of a mapped
    task that each return a list make one flat stream. ``line`` and ``position`` both count records
    in that flat stream. An item that is neither a mapping nor a pydantic model becomes an error record.

    :param records: The records, dicts or pydantic models.
    :raises KlarConfigurationError: When ``records`` is a single dict, a string or not iterable.
    """
    if records is None or isinstance(records, (str, bytes, Mapping)) or _is_model(records):
        raise KlarConfigurationError(
            f"records must be an iterable of records (a list of dicts or models), got "
            f"{type(records).__name__}; wrap a single record in a list."
        )
    try:
        iterator = iter(records)
    except TypeError:
        raise KlarConfigurationError(
            f"records must be an iterable of records, got {type(records).__name__}."
        ) from None
    return _iter_records(iterator)


def _iter_records(iterator: Iterator[Any]) -> Iterator[SourceRecord]:
    index = 0
    for item in iterator:
        # A mapped task's results arrive as one list per map index: read them as one flat list.
        for record in item if isinstance(item, (list, tuple)) else (item,):
            problem = _record_type_error(record)
            if problem is None:
                yield SourceRecord(index, "records", index, record)
            else:
                message = f"item {index}: {problem}"
                yield SourceRecord(index, "records", index, None, message, cut(repr(record)))
            index += 1


def detect_format(name: str, file_format: str | None = None) -> tuple[str, bool]:
    """Return ``(format, gzipped)`` for a file name: ``format`` is ``jsonl``, ``json``, ``csv`` or
    ``parquet``.

    :param name: The file name or path; a trailing ``.gz`` means gzip-compressed.
    :param file_format: Overrides the extension: ``jsonl`` (or ``ndjson``), ``json`` or ``csv``,
        optionally with ``.gz`` (``jsonl.gz``) to force decompression.
    :raises KlarConfigurationError: When neither the extension nor ``file_format`` names a format.
    """
    lowered = str(name).lower()
    gzipped = lowered.endswith(".gz")
    stem = lowered[:-3] if gzipped else lowered
    if file_format:
        wanted = file_format.lower().strip().lstrip(".")
        if wanted.endswith(".gz"):
            gzipped, wanted = True, wanted[:-3]
        try:
            return _FORMAT_ALIASES[wanted], gzipped
        except KeyError:
            raise KlarConfigurationError(
                f"Unknown file_format {file_format!r}; use one of jsonl, json, csv (optionally with .gz) "
                f"or parquet."
            ) from None
    for extension, fmt in _EXTENSIONS.items():
        if stem.endswith(extension):
            return fmt, gzipped
    raise KlarConfigurationError(
        f"Cannot tell the format of {name!r} from its extension; name it .jsonl, .ndjson, .json or .csv "
        f"(optionally .gz) or .parquet, or pass file_format."
    )


def _object_storage_path() -> type:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    return ObjectStoragePath


def to_storage_path(path: str | os.PathLike[str] | Any, conn_id: str | None = None) -> Any:
    """Return ``path`` as an ``ObjectStoragePath``; a plain local path is made absolute.

    :param path: A local path, a URL (``s3://bucket/key``) or an ``ObjectStoragePath``.
    :param conn_id: The Airflow connection for the object storage, when the URL does not name one.
    """
    osp: Any = _object_storage_path()
    if isinstance(path, osp):
        if conn_id and not storage_conn_id(path):
            return osp(str(path), conn_id=conn_id)
        return path
    text = os.fspath(path)
    if "://" not in text:
        # A plain local path; absolute so that the file list and the `source` names are unambiguous.
        text = os.path.abspath(os.path.expanduser(text))
    try:
        return osp(text, conn_id=conn_id) if conn_id else osp(text)
    except ValueError as exc:
        # fsspec does not know the scheme at all (a typo, or a package that is not installed).
        raise KlarConfigurationError(f"Cannot use {_redact(text)!r} as a path: {exc}.") from exc


def storage_conn_id(path: Any) -> str | None:
    """Return the connection id an ``ObjectStoragePath`` carries, if any (Airflow 2.11's has no attribute).

    :param path: An ``ObjectStoragePath``.
    """
    named = getattr(path, "conn_id", None)
    if named is None:
        named = (getattr(path, "storage_options", None) or {}).get("conn_id")
    return named or None


def _redact(url: str) -> str:
    scheme, found, rest = url.partition("://")
    if not found:
        return url
    host, slash, tail = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{tail}"


def display_name(path: Any) -> str:
    """Return a path's URL without connection id or credentials (a plain path for local files).

    :param path: An ``ObjectStoragePath``.
    """
    text = str(path.path)
    if path.protocol in _LOCAL_PROTOCOLS:
        return text
    if "://" in text:
        # http(s) paths are whole URLs; drop any user:password@ in them.
        return _redact(text)
    return f"{path.protocol}://{text.lstrip('/')}"


def _filesystem(path: Any) -> Any:
    try:
        return path.fs
    except ValueError as exc:
        # Airflow knows only file:// by itself; s3://, gs://... come with their providers.
        raise KlarConfigurationError(
            f"No filesystem for {path.protocol}:// ({exc}). Install the provider that brings it "
            f"(apache-airflow-providers-amazon for s3://, -google for gs://, -microsoft-azure for abfs://) "
            f"or attach one with airflow.sdk.io.attach()."
        ) from exc


def _hidden(relative: str) -> bool:
    # Hadoop/Spark convention: _SUCCESS, _committed_*, .part-0000.crc are bookkeeping, not data.
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def resolve_paths(path: str | os.PathLike[str] | Any, *, conn_id: str | None = None) -> list[Any]:
    """Expand ``path`` into the files to read, in a stable (sorted) order.

    ``path`` is a local path, a URL any Airflow object storage understands (``file://``, ``s3://``,
    ``gs://``, ``memory://`` once attached ...) or an ``ObjectStoragePath``. A glob (``*``, ``?``,
    ``[...]``, ``**``) means every matching file; a folder means every file below it, recursively.
    In both cases names starting with ``_`` or ``.`` (``_SUCCESS``, ``.crc``) are skipped.

    :param path: The file, folder or pattern.
    :param conn_id: The Airflow connection for the object storage, when the URL does not name one.
    :raises KlarSourceNotFoundError: When nothing matches, naming the pattern.
    """
    return [found for found, _ in _resolve(path, conn_id)]


_VERSION_KEYS = ("ETag", "etag", "md5Hash", "generation", "mtime", "LastModified", "updated", "created")


def _version_of(info: Mapping[str, Any]) -> str:
    """Size and a change marker from a listing entry (ETag on S3, md5 on GCS, mtime locally)."""
    marker = next((info[key] for key in _VERSION_KEYS if info.get(key) is not None), "")
    return f"{info.get('size')}:{marker}"


def _resolve(path: Any, conn_id: str | None) -> list[tuple[Any, str]]:
    """Return the files of ``path`` with their versions (from the listing: no request per file)."""
    osp = _object_storage_path()
    base = to_storage_path(path, conn_id)
    fs = _filesystem(base)
    shown = display_name(base)
    target = str(base.path)

    def rebuild(found: str) -> Any:
        if base.protocol in _LOCAL_PROTOCOLS:
            return osp(found)
        url = f"{base.protocol}://{found.lstrip('/') if base.protocol != 'memory' else found}"
        named = storage_conn_id(base)
        return osp(url, conn_id=named) if named else osp(url)

    if glob.has_magic(target):
        listing = fs.glob(target, detail=True)
        root = target[: min(target.index(c) for c in "*?[" if c in target)].rsplit("/", 1)[0]
        problem = f"No file matches the pattern {shown!r}."
    elif fs.isdir(target):
        listing = fs.find(target, withdirs=False, detail=True)
        root = target.rstrip("/")
        problem = f"The folder {shown!r} holds no data file."
    else:
        try:
            info = fs.info(target)
        except FileNotFoundError:
            raise KlarSourceNotFoundError(f"No file at {shown!r}.") from None
        return [(base, _version_of(info))]
    files = sorted(
        (name, _version_of(info))
        for name, info in listing.items()
        if info.get("type") == "file" and not _hidden(name[len(root) :])
    )
    if not files:
        raise KlarSourceNotFoundError(problem)
    return [(rebuild(name), size) for name, size in files]


def iter_stream(
    stream: IO[bytes],
    file_format: str,
    *,
    gzipped: bool = False,
    source: str = "stream",
    start: int = 0,
    resource: str = "orders",
    api_version: str | None = None,
    lazy: bool = False,
) -> Iterator[SourceRecord]:
    """Read one open binary stream record by record.

    :param stream: A binary file object, positioned at the start.
    :param file_format: ``jsonl``, ``json``, ``csv`` or ``parquet`` (which needs a seekable stream).
    :param gzipped: Whether to decompress the stream with gzip while reading.
    :param source: The name given to :attr:`SourceRecord.source`.
    :param start: The position of the first record (the count of records read from earlier files).
    :param resource: The Klar resource, used by CSV to type its columns.
    :param api_version: The API version, used by CSV to type its columns (default: the resource's).
    :param lazy: Hand on JSON Lines lines and JSON array items unparsed (see
        :func:`~._json.iter_json_lines` and :func:`~._array.iter_json_array`).
    """
    fmt = _FORMAT_ALIASES.get(file_format, file_format)
    if fmt not in FORMATS:
        raise KlarConfigurationError(f"Unknown file format {file_format!r}; use one of {', '.join(FORMATS)}.")
    if fmt == "parquet":  # compressed inside, and read by seeking to its footer: never through gzip
        return iter_parquet(stream, source, start)
    body: IO[bytes] = gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream  # type: ignore[assignment]
    if fmt == "jsonl":
        return iter_json_lines(body, source, start, lazy=lazy)
    if fmt == "json":
        return iter_json_array(body, source, start, lazy=lazy)
    return iter_csv(body, source, start, resource, api_version)


def _check_csv_resource(resource: str) -> None:
    from airflow_provider_klar.resources import RESOURCES, get_resource

    try:
        row = get_resource(resource)
    except ValueError as exc:
        raise KlarConfigurationError(str(exc)) from None
    if not row.flat:
        flat = ", ".join(name for name, r in RESOURCES.items() if r.flat)
        raise KlarConfigurationError(
            f"CSV files are only for the flat resources ({flat}); {resource} records are nested: "
            f"use JSON Lines (.jsonl) or a JSON array (.json)."
        )


class FileSource(Iterator[SourceRecord]):
    """The records of a list of files, read lazily; what :func:`iter_path` returns.

    :param plan: The files with their format, gzip flag and version (size and change marker), in order.
    :param resource: The Klar resource (types CSV columns).
    :param api_version: Its API version (types CSV columns).
    :param lazy: Hand on JSON Lines lines and JSON array items unparsed (see
        :func:`~._json.iter_json_lines` and :func:`~._array.iter_json_array`).
    """

    def __init__(
        self,
        plan: list[tuple[Any, str, bool, str]],
        resource: str,
        api_version: str | None,
        *,
        lazy: bool = False,
    ) -> None:
        self._plan = plan
        files = [(p, fmt, gz) for p, fmt, gz, _ in plan]
        self._records = _iter_files(files, resource, api_version, lazy=lazy)

    @property
    def files(self) -> list[str]:
        """The files that will be read, in order (display names, no connection ids)."""
        return [display_name(p) for p, *_ in self._plan]

    @property
    def fingerprint(self) -> str:
        """A short hash of the file names, sizes and change markers: it changes when files appear, go
        or change (ETag on S3, md5 on GCS, modification time on local disks).

        A resumed upload should only trust positions recorded for the same fingerprint, since a new
        file sorted in front of the others would shift every position after it.
        """
        listing = "\n".join(f"{display_name(p)}\t{version}" for p, _, _, version in self._plan)
        return hashlib.sha256(listing.encode()).hexdigest()[:16]

    def __iter__(self) -> FileSource:
        return self

    def __next__(self) -> SourceRecord:
        return next(self._records)

    def close(self) -> None:
        """Stop reading and close the open file, if any."""
        self._records.close()

    @property
    def formats(self) -> set[str]:
        """The formats of the files (``jsonl``, ``json``, ``csv``)."""
        return {fmt for _, fmt, _, _ in self._plan}

    def iter_streams(self) -> Iterator[tuple[str, IO[bytes]]]:
        """Yield each file's display name and its open binary stream (decompressed), one after the other.

        For readers that split the lines themselves (the parallel validation of JSON Lines files); each
        stream is closed when the next one is asked for. Use either this or the records, not both.
        """
        for path, _, gzipped, _ in self._plan:
            with _open(path) as stream:
                body: IO[bytes] = gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream  # type: ignore[assignment]
                yield display_name(path), body


def iter_path(
    path: str | os.PathLike[str] | Any,
    *,
    file_format: str | None = None,
    resource: str = "orders",
    conn_id: str | None = None,
    api_version: str | None = None,
    lazy: bool = False,
) -> FileSource:
    """Read every file of ``path`` (see :func:`resolve_paths`) record by record, in order.

    The file list and every file's format are checked now, so a wrong path or extension fails before
    anything is read; the records themselves are read lazily as the iterator is consumed. The
    returned iterator also tells :attr:`~FileSource.files` and a :attr:`~FileSource.fingerprint`.

    :param path: A file, folder or glob, local or in object storage.
    :param file_format: ``jsonl``, ``json``, ``csv`` or ``parquet`` for every file, overriding the
        extensions.
    :param resource: The Klar resource; CSV is allowed only for flat ones and typed by its model.
    :param conn_id: The Airflow connection for the object storage, when the URL does not name one.
    :param api_version: The API version whose model types the CSV columns (default: the resource's).
    :param lazy: Hand on the lines of JSON Lines files and the items of JSON array files unparsed,
        their record :data:`~._record.UNPARSED` (:data:`~._record.UNPARSED_ITEM`) and their bytes in
        ``raw`` (the upload checks them in one pass; see :func:`~._record.parsed` for the dict).
    :raises KlarSourceNotFoundError: When nothing matches (yet).
    :raises KlarConfigurationError: When a format is unknown, or CSV is used for a nested resource.
    """
    plan = [(p, *detect_format(display_name(p), file_format), size) for p, size in _resolve(path, conn_id)]
    if any(fmt == "csv" for _, fmt, _, _ in plan):
        _check_csv_resource(resource)
    for p, fmt, gzipped, _ in plan:
        if fmt == "parquet":
            check_parquet(gzipped, display_name(p))
    return FileSource(plan, resource, api_version, lazy=lazy)


def _open(path: Any) -> IO[bytes]:
    """Open ``path`` for reading and report it to Airflow's hook lineage once.

    ``ObjectStoragePath.open`` reports lineage on every ``read()`` call, which costs a few µs per
    record under gzip; the file is reported once here instead.
    """
    stream: IO[bytes] = path.fs.open(path.path, "rb")
    try:
        from airflow.providers.common.compat.sdk import get_hook_lineage_collector

        get_hook_lineage_collector().add_input_asset(context=path, uri=display_name(path))
    except Exception:  # lineage is a nicety: never fail an upload over it
        log.debug("Could not report %s to hook lineage.", display_name(path), exc_info=True)
    return stream


def _iter_files(
    plan: list[tuple[Any, str, bool]], resource: str, api_version: str | None, *, lazy: bool
) -> Generator[SourceRecord, None, None]:
    position = 0
    for number, (path, fmt, gzipped) in enumerate(plan):
        name = display_name(path)
        first = position
        try:
            with _open(path) as stream:
                for item in iter_stream(
                    stream,
                    fmt,
                    gzipped=gzipped,
                    source=name,
                    start=position,
                    resource=resource,
                    api_version=api_version,
                    lazy=lazy,
                ):
                    position += 1
                    yield item
        except KlarSourceError as err:
            raise _with_files_after(err, plan[number + 1 :]) from err.__cause__
        except (OSError, EOFError, zlib.error) as err:
            # Opening failed (the file went away after the listing), or a reader let a storage error through.
            reason = f"reading the file failed ({type(err).__name__}: {err})"
            where = f"after its record {position - first}" if position > first else "before its first record"
            broken = source_error(name, where, reason, position=position)
            raise _with_files_after(broken, plan[number + 1 :]) from err


def _with_files_after(err: KlarSourceError, after: list[tuple[Any, str, bool]]) -> KlarSourceError:
    """Add to ``err`` the files of a glob or folder after the broken one, which were not read either."""
    if not after:
        return err
    names = ", ".join(display_name(p) for p, _, _ in after[:3]) + (", ..." if len(after) > 3 else "")
    files = "file" if len(after) == 1 else f"{len(after)} files"
    message = f"{err} The {files} after it ({names}) {'was' if len(after) == 1 else 'were'} not read either."
    return KlarSourceError(
        message, source=err.source, position=err.position, line=err.line, offset=err.offset
    )
