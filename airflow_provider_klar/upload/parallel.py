"""Parallel validation: worker processes parse, check and encode the lines of JSON Lines files.

An upload of a large file is bound by one core: parsing, validating and encoding each record takes
most of the time of the thread that reads the source. With ``validation_workers`` of 2 or more, that
thread only splits the files into chunks of lines; worker processes run the very per-record step of
the in-process path (:func:`~airflow_provider_klar.upload.prepare.make_preparer` on the record
:func:`~airflow_provider_klar.upload._json.parse_json_line` reads) on each chunk, and the results come
back in source order, so positions, checkpoints, rejected records and counts are exactly those of the
in-process path. At most ``2 x workers`` chunks are out at once, so memory stays bounded.

The workers are never forked from the task's process: it has threads (Airflow's task runner, the
upload's senders, HTTP clients), and a child forked while another thread holds a lock (logging's, an
import's, the allocator's) can wait for it forever. They are started by a ``forkserver`` (a fresh,
single-threaded process that forks them) or, where there is none, by ``spawn``; so the per-record step
travels to them pickled, as a factory that each worker calls once (``functools.partial(make_preparer,
validator, id_field, max_raw=...)``). They never log and never touch the network.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult, Pool
from typing import Any

from airflow_provider_klar.upload._json import STREAM_ERRORS, lazy_line, stream_error
from airflow_provider_klar.upload._json import lines as lines_of
from airflow_provider_klar.upload._record import parsed
from airflow_provider_klar.upload.prepare import PreparedRecord
from airflow_provider_klar.upload.settings import LogLike

__all__ = [
    "CHUNK_LINES",
    "ParallelReader",
    "ReadyRecord",
    "open_parallel",
    "prepared_of",
    "start_method",
    "workers_available",
]

#: Lines per chunk handed to a worker: enough that handing over costs little per record, few enough
#: that the first batch is not held up.
CHUNK_LINES = 500
#: How often (seconds) the reader, waiting for a chunk, looks at the stop event and the workers.
_POLL = 0.2
#: How long (seconds) closing the reader early waits for the chunks handed over to finish.
_CLOSE_WAIT = 60.0

Prepare = Callable[[Any], PreparedRecord]
#: A picklable callable without arguments that returns the per-record step (called once per worker).
PrepareFactory = Callable[[], Prepare]
#: Modules the forkserver imports once, so that the workers it forks start with them loaded. None of
#: them imports Airflow: in a fresh interpreter inside Airflow's task runner, importing Airflow fails
#: (the task process's environment names no usable metadata database), and so would the workers.
_PRELOAD = [
    "airflow_provider_klar.upload.parallel",
    "airflow_provider_klar.upload.prepare",
    "airflow_provider_klar.models",
]
#: Held while worker processes start: the preparation data they get leaves the main module out.
_STARTING = threading.Lock()
#: Keys of multiprocessing's preparation data that make a new process import the parent's main module.
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


def _klar_error(message: str, *, stopped: bool = False) -> Exception:
    # Imported here, in the task's process only: the exceptions module imports Airflow (see _PRELOAD).
    from airflow_provider_klar.exceptions import KlarError, KlarUploadStoppedError

    return KlarUploadStoppedError(message) if stopped else KlarError(message)


@contextmanager
def _without_main_module() -> Iterator[None]:
    """Start processes without the parent's main module: they need nothing from it.

    A worker would otherwise run the main module again (the ``airflow`` command, which imports Airflow,
    which fails there; or a user's script). multiprocessing has no switch for it, so its preparation
    data is filtered while the pool starts its processes.
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def prepared(name: str) -> dict[str, Any]:
        data = original(name)
        for key in _MAIN_KEYS:
            data.pop(key, None)
        return data

    with _STARTING:
        spawn.get_preparation_data = prepared  # type: ignore[assignment]
        try:
            yield
        finally:
            spawn.get_preparation_data = original  # type: ignore[assignment]


@dataclass(slots=True)
class ReadyRecord:
    """A source record that comes with its per-record result already computed (by a worker).

    It has the attributes of :class:`~airflow_provider_klar.upload.sources.SourceRecord`; ``prepared``
    is ``None`` only for positions an earlier try finished with (the engine skips them unprepared).
    """

    position: int
    source: str
    line: int | None
    record: Any
    error: str | None
    raw: str | bytes | None
    prepared: PreparedRecord | None


def prepared_of(src: ReadyRecord) -> PreparedRecord:
    """Return the result a worker computed for ``src`` (the engine's per-record step with workers).

    :param src: A record the :class:`ParallelReader` yielded.
    """
    assert src.prepared is not None
    return src.prepared


# -- in the workers -----------------------------------------------------------------------------------

_prepare: Prepare | None = None
_starts: list[int] = []
_ends: list[int] = []


def _init(factory: PrepareFactory, starts: list[int], ends: list[int]) -> None:
    """Set a worker up: its per-record step (built here from the pickled factory), no signals, no logs."""
    global _prepare, _starts, _ends
    # Handlers a worker may have got from the parent's main module (Airflow's SIGTERM handler calls
    # on_kill) must not run in a worker: the parent stops the workers itself, and Ctrl-C is its own.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Logging configured by an imported main module writes to the task's log; a worker has nothing to say.
    logging.disable(logging.CRITICAL)
    _prepare, _starts, _ends = factory(), starts, ends


def _work(source: str, start: int, lines: list[tuple[int, bytes]]) -> list[Any]:
    """Read and prepare one chunk; return one small result per line (see :meth:`ParallelReader._collect`)."""
    prepare, starts, ends = _prepare, _starts, _ends
    assert prepare is not None
    out: list[Any] = []
    for offset, (number, line) in enumerate(lines):
        position = start + offset
        if starts:
            i = bisect_right(starts, position) - 1
            if i >= 0 and position <= ends[i]:
                out.append(None)
                continue
        # Checked in one pass over the line's bytes, as in the task's process (see upload/prepare.py).
        src = lazy_line(line, number, position, source)
        prepared = prepare(src)
        encoded = prepared.encoded
        if encoded is not None and encoded == line.strip():
            # Sent as read: the parent has the bytes, so only the rest travels back (a line that opens
            # with a byte order mark is not sent as read: it goes back without the mark).
            out.append((prepared.id, prepared.warnings, prepared.unknown_fields, prepared.key))
        else:
            src = parsed(src)
            out.append((src.record, src.error, src.raw, prepared))
    return out


# -- in the reading thread ----------------------------------------------------------------------------


def start_method() -> str | None:
    """Return how worker processes are started here: ``forkserver``, else ``spawn``; never ``fork``."""
    methods = multiprocessing.get_all_start_methods()
    return next((m for m in ("forkserver", "spawn") if m in methods), None)


def workers_available() -> bool:
    """Whether worker processes can be started here without forking the task's process."""
    return start_method() is not None


def _context() -> multiprocessing.context.BaseContext:
    method = start_method()
    if method is None:
        raise OSError("neither forkserver nor spawn is available")
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Takes effect when the server starts (once per process); a server already running keeps its own.
        context.set_forkserver_preload(_PRELOAD)  # type: ignore[attr-defined]
    return context


def open_parallel(
    source: Any,
    workers: int,
    factory: PrepareFactory,
    confirmed: list[list[int]],
    *,
    stop: threading.Event,
    log: LogLike,
) -> ParallelReader | None:
    """Start ``workers`` processes reading ``source``; ``None`` (having logged why) when that cannot be.

    :param source: The engine's source; only a :class:`~airflow_provider_klar.upload.sources.FileSource`
        of JSON Lines files can be read in parallel.
    :param workers: How many worker processes.
    :param factory: Builds the per-record step; picklable (e.g. ``functools.partial(make_preparer,
        validator, id_field, max_raw=...)``), since the workers are not forks of this process.
    :param confirmed: Positions earlier tries finished with, as ``[start, end]`` ranges: not prepared.
    :param stop: Set when the upload must stop.
    :param log: Where to say why the in-process path is used instead.
    """
    from airflow_provider_klar.upload.sources import FileSource

    if not isinstance(source, FileSource) or source.formats != {"jsonl"}:
        log.info(
            "validation_workers=%d applies to JSON Lines files only; validating in the task's process.",
            workers,
        )
        return None
    try:
        pickle.dumps(factory)  # the workers get it pickled: say so here rather than in a worker
    except Exception as err:  # (PicklingError, TypeError, AttributeError...) of a custom validator
        log.warning(
            "validation_workers=%d needs a per-record step that can be pickled (%s); "
            "validating in the task's process.",
            workers,
            err,
        )
        return None
    try:
        context = _context()
        starts = [start for start, _ in confirmed]
        ends = [end for _, end in confirmed]
        with _without_main_module():
            pool = context.Pool(workers, initializer=_init, initargs=(factory, starts, ends))
    except Exception as err:  # (OSError, PicklingError, a daemonic process...) the in-process path works
        log.warning(
            "Could not start %d validation workers (%s); validating in the task's process.", workers, err
        )
        return None
    log.info("Checking the records in %d worker processes (started by %s).", workers, start_method())
    return ParallelReader(source, pool, workers, factory(), stop)


class ParallelReader:
    """The records of a JSON Lines :class:`FileSource`, prepared by a pool of workers, in source order.

    Iterate it once; :meth:`close` it (also when iteration stopped early) to stop the workers.

    :param source: The files.
    :param pool: The started worker pool (see :func:`open_parallel`).
    :param workers: Its size.
    :param prepare: The per-record step, for the rare record read in this process (a broken gzip stream).
    :param stop: Set when the upload must stop.
    """

    def __init__(
        self, source: Any, pool: Pool, workers: int, prepare: Prepare, stop: threading.Event
    ) -> None:
        self._source = source
        self._pool: Pool | None = pool
        # Worker processes never end by themselves while the pool lives: one that did has crashed.
        self._processes: list[Any] = list(getattr(pool, "_pool", []))
        self._limit = 2 * workers
        self._prepare = prepare
        self._stop = stop
        self._records: Generator[ReadyRecord, None, None] = self._read()
        self._submitted: deque[AsyncResult[list[Any]]] = deque()

    def __iter__(self) -> Iterator[ReadyRecord]:
        return self._records

    def __enter__(self) -> ParallelReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and end the workers; idempotent.

        Chunks already handed over are let finish (a few, each of ``CHUNK_LINES`` lines) and the pool
        is closed gracefully. ``Pool.terminate`` with work still queued can hang for good: the pool's
        task thread may be half way through writing a chunk into the pipe when the workers that would
        read it are killed. It is used only when a worker died or the chunks do not finish in time.
        """
        self._records.close()
        pool, self._pool = self._pool, None
        if pool is None:
            return
        deadline = time.monotonic() + _CLOSE_WAIT
        while self._submitted:
            result = self._submitted.popleft()
            while not result.ready() and time.monotonic() < deadline and not self._dead():
                result.wait(_POLL)
            if not result.ready():
                pool.terminate()
                break
        else:
            pool.close()
        pool.join()

    def _dead(self) -> list[int]:
        return [p.exitcode for p in self._processes if p.exitcode is not None]

    def _read(self) -> Generator[ReadyRecord, None, None]:
        pending: deque[tuple[str, int, list[tuple[int, bytes]], Any]] = deque()
        limit = self._limit
        position = 0
        for name, stream in self._source.iter_streams():
            chunk: list[tuple[int, bytes]] = []
            start = position
            number = 0
            broken = None
            try:
                for number, line in enumerate(lines_of(stream), 1):
                    if line.isspace():
                        continue
                    chunk.append((number, line))
                    position += 1
                    if len(chunk) == CHUNK_LINES:
                        pending.append((name, start, chunk, self._submit(name, start, chunk)))
                        chunk, start = [], position
                        while len(pending) >= limit:
                            yield from self._collect(*pending.popleft())
            except STREAM_ERRORS as exc:
                broken = stream_error(name, number, position, exc)
                broken.__cause__ = exc
            if chunk:
                pending.append((name, start, chunk, self._submit(name, start, chunk)))
            if broken is not None:
                # What was read before the break is yielded (and sent); then the source fails.
                while pending:
                    yield from self._collect(*pending.popleft())
                raise broken
        while pending:
            yield from self._collect(*pending.popleft())
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            pool.join()

    def _submit(self, name: str, start: int, chunk: list[tuple[int, bytes]]) -> AsyncResult[list[Any]]:
        assert self._pool is not None
        result = self._pool.apply_async(_work, (name, start, chunk))
        # Kept until answered, so that close() can let the unanswered ones finish.
        self._submitted.append(result)
        while self._submitted and self._submitted[0].ready():
            self._submitted.popleft()
        return result

    def _wait(self, result: AsyncResult[list[Any]]) -> list[Any]:
        while True:
            try:
                return result.get(timeout=_POLL)
            except multiprocessing.TimeoutError:
                if self._stop.is_set():
                    raise _klar_error(
                        "The upload was stopped while records were being validated.", stopped=True
                    ) from None
                dead = self._dead()
                if dead:
                    raise _klar_error(
                        f"A validation worker process ended unexpectedly (exit code {dead[0]}); "
                        "retry the task, or set validation_workers=1."
                    ) from None

    def _collect(
        self, name: str, start: int, chunk: list[tuple[int, bytes]], result: Any
    ) -> Iterator[ReadyRecord]:
        if isinstance(result, list):  # read in this process
            yield from result
            return
        for offset, item in enumerate(self._wait(result)):
            number, line = chunk[offset]
            position = start + offset
            if item is None:  # finished by an earlier try
                yield ReadyRecord(position, name, number, None, None, None, None)
            elif type(item[3]) is not PreparedRecord:  # sent as read (see _work)
                prepared = PreparedRecord(line.strip(), item[0], (), item[1], item[2], item[3])
                yield ReadyRecord(position, name, number, None, None, line, prepared)
            else:
                record, error, raw, prepared = item
                yield ReadyRecord(position, name, number, record, error, raw, prepared)
