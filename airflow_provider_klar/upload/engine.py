"""The upload engine: validate, encode, batch, send concurrently, account, checkpoint. No Airflow in here.

The thread that calls :meth:`UploadEngine.run` reads the source, checks and encodes each record and fills
batches; up to ``max_concurrency`` worker threads send batches through one shared hook. A new batch is
handed to the workers only when fewer than ``max_concurrency`` are in flight, so memory is bounded by
``batch_size x (max_concurrency + 1)`` records whatever the source size. All accounting happens in the
calling thread.

Every batch covers a *span*: the contiguous run of source positions read since the previous batch,
including the records rejected locally in between. When a span is finished (its batch answered, and a
possible re-send of records Klar did not store answered too) its positions join the checkpoint's
confirmed ranges, together with the running counts. A retried try skips confirmed positions before
even validating them.

Newest wins, in source order, per record key (the id, or the fields of ``EngineSettings.key_fields``):

- within a batch, a later version replaces the earlier one (see :class:`~.batching.Batcher`), which is
  counted as ``superseded``;
- a batch is handed to the workers only when no earlier batch that is still unanswered (in flight,
  queued, or waiting for the re-send of records Klar did not store) carries one of its keys; until then
  reading pauses. So a later version is sent only after every earlier one was answered, and confirmed
  positions are closed under "an earlier version of the same key": a resumed try never re-sends a
  version that a confirmed later one superseded. Records without a readable key cannot collide and go
  freely.

When iterating the source raises (an unreadable file, a failing generator), what was read is still sent
and accounted for, then :class:`~airflow_provider_klar.exceptions.KlarSourceError` is raised, with
``UploadEngine.result.unread`` saying where reading stopped; an error of the engine's own per-record
step, or Klar's, ends the run at once.
"""

from __future__ import annotations

import functools
import gc
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_provider_klar.exceptions import (
    KlarError,
    KlarResponseError,
    KlarSourceError,
    KlarUploadStoppedError,
)
from airflow_provider_klar.results import FieldError, KlarBatchResult, OutcomeState
from airflow_provider_klar.upload._record import parsed
from airflow_provider_klar.upload.accounting import Rejection, RejectionOrigin, Tally, WarningTally, where
from airflow_provider_klar.upload.batching import (
    BODY_OVERHEAD,
    Batch,
    Batcher,
    BatchItem,
)
from airflow_provider_klar.upload.prepare import PreparedRecord, SourceLike, ValidatorLike, make_preparer
from airflow_provider_klar.upload.ranges import PositionRanges
from airflow_provider_klar.upload.settings import (
    CHECKPOINT_FORMAT,
    BatchSender,
    CheckpointStore,
    EngineResult,
    EngineSettings,
    LogLike,
    Unread,
    UploadMode,
)

__all__ = ["EngineResult", "EngineSettings", "UploadEngine", "UploadMode"]

#: How often (seconds) a thread waiting for batches looks at the stop event.
_POLL = 0.2
#: A position no source reaches.
_NEVER = sys.maxsize


@dataclass
class _Span:
    """Source positions ``start..end`` and what became of their records; finished when nothing is pending."""

    number: int
    start: int
    end: int = -1
    records: int = 0
    sent: int = 0
    accepted: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    warnings: WarningTally | None = None
    pending: int = 0
    seconds: float = 0.0
    superseded: int = 0
    #: The span's batch while it is unanswered: its keys are held until the span is finished.
    batch: Batch | None = None


@dataclass
class _Send:
    batch: Batch
    span: _Span
    resend: bool = False


class UploadEngine:
    """Send a stream of source records to Klar in concurrent batches, with an exact account of each.

    :param settings: What to send where, and how.
    :param sender: The hook (or anything with the same ``upload``/``validate`` methods); shared by the
        worker threads, so it must be thread-safe.
    :param validator: The models' validator, or ``None`` to send records unchecked.
    :param on_rejected: Called (in the calling thread) with each rejected record, e.g. to write it out.
    :param checkpoint: Where to keep progress between tries, or ``None`` for no resume.
    :param log: Where progress lines go.
    :param stop: Set it (from any thread) to stop promptly; :meth:`run` then raises
        :class:`KlarUploadStoppedError`.
    :param total: The number of records, when known in advance (for the ETA in the log).
    """

    def __init__(
        self,
        settings: EngineSettings,
        sender: BatchSender,
        *,
        validator: ValidatorLike | None = None,
        on_rejected: Callable[[Rejection], None] | None = None,
        checkpoint: CheckpointStore | None = None,
        log: LogLike | None = None,
        stop: threading.Event | None = None,
        total: int | None = None,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.validator = validator
        self.on_rejected = on_rejected
        self.checkpoint = checkpoint
        self.log: LogLike = log or logging.getLogger(__name__)
        self.stop = stop or threading.Event()
        self.total = total
        self.tally = Tally()
        self.confirmed = PositionRanges()
        self._earlier_batches = 0
        self._earlier_records = 0
        self._loaded = False
        self._resumed = 0
        self._queue: deque[_Send] = deque()
        self._in_flight: dict[Future[tuple[KlarBatchResult, float]], _Send] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._spans = 0
        self._last_save = 0.0
        self._dirty = False
        # Spans whose records went out and that the saved checkpoint does not cover yet: the ones a
        # retry would send again if this process died now (see _pump).
        self._sent_open = 0
        self._sent_unsaved = 0
        self._t0 = 0.0
        # Keys of the batches handed to the workers and not yet finished (see _hold_back): a set, as
        # hold-back keeps every key in at most one unfinished batch.
        self._held: set[Hashable] = set()
        self._held_back = 0
        # Spans with a batch not yet finished, and the span being read: their rejections are written
        # out even when the run fails.
        self._open: dict[int, _Span] = {}
        self._span: _Span | None = None
        self._unread: Unread | None = None
        self._unread_error: KlarSourceError | None = None
        #: The account of the last run, also when it raised ``KlarSourceError`` after sending what was read.
        self.result: EngineResult | None = None

    # -- checkpoint -------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        s = self.settings
        return {
            "format": CHECKPOINT_FORMAT,
            "resource": s.resource,
            "api_version": s.api_version,
            "mode": s.mode.value,
            "source": s.source_key,
        }

    def load_checkpoint(self) -> PositionRanges:
        """Read the checkpoint of earlier tries, once; return the positions they finished with.

        :meth:`run` calls it; call it before to learn what an earlier try did (e.g. to carry its rejected
        records over).
        """
        if not self._loaded:
            self._loaded = True
            self._resume()
        return self.confirmed

    def _resume(self) -> None:
        if self.checkpoint is None:
            return
        state = self.checkpoint.load()
        if not state:
            return
        identity = self._identity()
        if any(state.get(key) != value for key, value in identity.items()):
            self.log.warning(
                "Ignoring a checkpoint of an earlier try made for another upload (%s); sending everything.",
                ", ".join(f"{k}={state.get(k)!r}" for k in identity if state.get(k) != identity[k]),
            )
            return
        try:
            confirmed = PositionRanges(state.get("confirmed") or ())
            tally = Tally.from_state(state.get("tally") or {})
        except (TypeError, ValueError) as err:
            self.log.warning("Ignoring an unreadable checkpoint (%s); sending everything.", err)
            return
        self.confirmed, self.tally = confirmed, tally
        self._earlier_batches = tally.batches
        self._earlier_records = tally.records
        self.log.info(
            "Resuming: earlier tries finished %d records (%d accepted, %d rejected) in %d batches; "
            "those are not sent again.",
            confirmed.count,
            tally.accepted,
            tally.rejected,
            tally.batches,
        )

    def _save(self, *, force: bool = False) -> None:
        if self.checkpoint is None or not self._dirty:
            return
        now = time.monotonic()
        if not force and now - self._last_save < self.settings.checkpoint_interval:
            return
        state = {
            **self._identity(),
            "confirmed": self.confirmed.to_list(),
            "tally": self.tally.to_state(),
            "saved_at": datetime.now(timezone.utc).isoformat(),
        }
        try:
            self.checkpoint.save(state)
        except Exception as err:  # progress bookkeeping must not fail an otherwise working upload
            self.log.warning("Could not save the upload checkpoint (%s); a retry may re-send batches.", err)
            return
        self._last_save, self._dirty, self._sent_unsaved = now, False, 0

    # -- the run ----------------------------------------------------------------------------------

    def run(self, source: Iterable[SourceLike]) -> EngineResult:
        """Read, check, batch and send every record of ``source``; return the account.

        When iterating ``source`` raises part way, what was read is still sent and accounted for (and
        saved in the checkpoint) before this raises :class:`KlarSourceError`; :attr:`result` then holds
        the account, with ``unread`` saying where reading stopped.

        :param source: The records, as the source readers yield them (with positions).
        :raises KlarSourceError: The source stopped being readable: the reader's own error, or one
            naming the error a ``records=`` iterable raised; the rest was not read.
        :raises KlarUploadStoppedError: ``stop`` was set; errors of requests cut short by the stop
            are chained to it.
        :raises KlarError: The first fatal error of a batch (auth, not found, retries exhausted...),
            after cancelling the batches not yet sent. The rejected records of unfinished batches are
            still handed to ``on_rejected`` first.
        """
        started = datetime.now(timezone.utc)
        self._t0 = time.monotonic()
        self.load_checkpoint()
        self._pool = ThreadPoolExecutor(self.settings.max_concurrency, thread_name_prefix="klar-upload")
        try:
            with _older_objects_left_alone():
                self._read(source)
                while self._queue or self._in_flight:
                    self._pump()
                    self._harvest()
        except BaseException as err:
            asked_to_stop = self.stop.is_set()  # before _abort sets it too
            # A failing source (or rejected-file writer) leaves the batches in flight worth finishing;
            # Klar's errors, a stop request and interpreter-level exits (timeouts) end them now.
            self._abort(drain=isinstance(err, Exception) and not isinstance(err, KlarError))
            self._save(force=True)
            self._report_unfinished()
            if asked_to_stop and isinstance(err, Exception) and not isinstance(err, KlarUploadStoppedError):
                # Stopping closes the hook under the requests in flight; what they raise is the stop's
                # echo (a closed client, a closed limiter), not the reason the task ends.
                raise KlarUploadStoppedError("The upload was stopped while batches were in flight.") from err
            raise
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._unread is not None:
            self._save(force=True)
        if self._held_back:
            self.log.info(
                "%d batches waited for an earlier batch carrying a version of the same records to be "
                "answered, so that the newest version arrives last.",
                self._held_back,
            )
        finished = datetime.now(timezone.utc)
        self.result = EngineResult(
            tally=self.tally,
            resumed_records=self._resumed,
            skipped_batches=self._earlier_batches,
            started_at=started,
            finished_at=finished,
            seconds=time.monotonic() - self._t0,
            unread=self._unread,
            held_back=self._held_back,
        )
        if self._unread_error is not None:
            raise self._unread_error
        return self.result

    def clear_checkpoint(self) -> None:
        """Remove the checkpoint (after a successful run); failures are logged, not raised."""
        if self.checkpoint is None:
            return
        try:
            self.checkpoint.clear()
        except Exception as err:
            self.log.warning("Could not remove the upload checkpoint (%s).", err)

    def _read(self, source: Iterable[SourceLike]) -> None:
        s = self.settings
        # The longest record that fits a request alone; longer ones are rejected, never sent.
        longest = s.max_batch_bytes - BODY_OVERHEAD - 1
        prepare = make_preparer(self.validator, s.id_field, max_raw=longest, key_fields=s.key_fields)
        if s.validation_workers > 1:
            from airflow_provider_klar.upload.parallel import open_parallel, prepared_of

            # Worker processes run the same per-record step on chunks of lines, in source order.
            # The workers are not forks of this process: they build the step from a picklable recipe.
            recipe = functools.partial(
                make_preparer, self.validator, s.id_field, max_raw=longest, key_fields=s.key_fields
            )
            reader = open_parallel(
                source, s.validation_workers, recipe, self.confirmed.to_list(), stop=self.stop, log=self.log
            )
            if reader is not None:
                with reader:
                    self._read_records(reader, prepared_of, longest)
                return
        self._read_records(source, prepare, longest)

    def _read_records(
        self, source: Iterable[SourceLike], prepare: Callable[[Any], PreparedRecord], longest: int
    ) -> None:
        s = self.settings
        batcher = Batcher(s.batch_size, s.max_batch_bytes)
        stopped = self.stop.is_set
        # With a key of several fields the per-record step computes it; otherwise the id is the key.
        multi_key = len(s.key_fields) > 1 or (bool(s.key_fields) and s.key_fields[0] != s.id_field)
        # Positions earlier tries finished with, as a cursor: ordinals only grow, so one comparison per
        # record suffices (self.confirmed itself grows during the run and is not consulted here).
        earlier = [*self.confirmed.to_list(), [_NEVER, _NEVER]]
        skip = 0
        skip_from, skip_to = earlier[0]
        span = self._new_span(0)
        ordinal = -1
        src: SourceLike | None = None
        step_failed = False
        try:
            for ordinal, src in enumerate(source):
                # The loop's body is the engine's own step: its errors end the run as they are, while
                # an error raised by the source's iterator (outside this try) leaves the rest unread.
                try:
                    if stopped():
                        raise KlarUploadStoppedError(
                            f"The upload was stopped after reading {ordinal} records."
                        )
                    if ordinal >= skip_from:
                        while ordinal > skip_to:
                            skip += 1
                            skip_from, skip_to = earlier[skip]
                        if ordinal >= skip_from:
                            self._resumed += 1
                            continue
                    prepared = prepare(src)
                    encoded = prepared.encoded
                    if encoded is None or len(encoded) > longest:
                        span = self._reject_local(span, ordinal, src, prepared, batcher)
                    else:
                        key = prepared.key if multi_key else prepared.id
                        batch = batcher.add(
                            BatchItem(ordinal, prepared.id, encoded, src.source, src.line, key)
                        )
                        if batch is not None and batch.items[-1].ordinal != ordinal:
                            # The record did not fit and starts the next batch: the span ends just before.
                            span.end = ordinal - 1
                            span = self._close(span, batch)
                            batch = None
                        span.records += 1
                        if batch is not None:
                            span.end = ordinal
                            span = self._close(span, batch)
                    if prepared.warnings or prepared.unknown_fields:
                        if span.warnings is None:
                            span.warnings = WarningTally()
                        span.warnings.add(prepared.id, prepared.warnings, prepared.unknown_fields)
                except BaseException:
                    step_failed = True
                    raise
        except Exception as err:
            # The engine's own errors raised through the iterator (a stop, a validation worker that
            # died) end the run as well; a reader's KlarSourceError and anything else leave the rest unread.
            if (
                step_failed
                or stopped()
                or (isinstance(err, KlarError) and not isinstance(err, KlarSourceError))
            ):
                raise
            self._source_failed(err, ordinal + 1, src)
        span.end = ordinal
        self._close(span, batcher.flush())

    def _reject_local(
        self, span: _Span, ordinal: int, src: SourceLike, prepared: PreparedRecord, batcher: Batcher
    ) -> _Span:
        """Count a record that must not be sent as rejected locally; return the span to read on with."""
        src = parsed(src)  # the rejected file shows the record, not its bytes
        errors = prepared.errors
        if prepared.encoded is not None:  # longer than a request may carry
            errors = (FieldError("", batcher.too_large(prepared.encoded) or ""),)
        span.records += 1
        span.rejections.append(
            Rejection(
                ordinal,
                src.source,
                src.line,
                prepared.id,
                errors,
                RejectionOrigin.LOCAL,
                src.record if src.error is None else getattr(src, "raw", None),
            )
        )
        if len(span.rejections) >= self.settings.batch_size:
            # A long run of invalid records: finish what is pending rather than hold them all.
            span.end = ordinal
            span = self._close(span, batcher.flush())
        return span

    def _source_failed(self, err: Exception, read: int, last: SourceLike | None) -> None:
        """Note that the source raised after ``read`` records; what was read is still sent."""
        source = getattr(err, "source", None)
        if not isinstance(source, str):
            source = last.source if last is not None else None
        # Klar's own errors already say what they are; anything else is named by its type.
        reason = str(err) if isinstance(err, KlarError) else f"{type(err).__name__}: {err}"
        where_last = where(last.position, last.source, last.line) if last is not None else None
        self._unread = Unread(source=source, after=read, last=where_last, reason=reason)
        if isinstance(err, KlarSourceError):
            self._unread_error = err
        else:
            self._unread_error = KlarSourceError(
                f"Reading {source or 'the records'} failed after {read:,} records: {reason}. "
                "The rest was not read.",
                source=source,
                position=read,
            )
            self._unread_error.__cause__ = err
        self.log.warning(
            "Reading the records failed after %d records (%s); sending what was read, then failing: "
            "the rest was not read.",
            read,
            reason,
        )

    def _new_span(self, start: int) -> _Span:
        self._spans += 1
        span = self._span = _Span(number=self._spans, start=start)
        return span

    def _close(self, span: _Span, batch: Batch | None) -> _Span:
        """Hand the span's batch to the workers (or finish the span if it has none); return the next span."""
        if batch is not None:
            span.sent = len(batch)
            span.superseded += batch.superseded
            span.pending = 1
            span.batch = batch
            self._open[span.number] = span
            self._hold_back(batch)
            self._queue.append(_Send(batch, span))
            self._pump()
        elif span.end >= span.start:
            self._finish(span)
        return self._new_span(span.end + 1)

    def _hold_back(self, batch: Batch) -> None:
        """Wait until no unfinished batch carries a key of ``batch``; then hold its keys.

        Reading pauses meanwhile (this runs in the reading thread), so memory stays bounded. Progress is
        certain: a key is held only by a batch that is queued or in flight, and those get answered.
        """
        held = self._held
        keys = [item.key for item in batch.items]
        if held and not held.isdisjoint(keys):
            self._held_back += 1
            while not held.isdisjoint(keys):
                if not self._queue and not self._in_flight:  # (cannot happen; never wait forever)
                    raise RuntimeError("A batch waits for keys that no unfinished batch holds.")
                self._pump()
                self._harvest()
        held.update(keys)
        held.discard(None)

    # -- sending ----------------------------------------------------------------------------------

    def _send(self, batch: Batch) -> tuple[KlarBatchResult, float]:
        if self.stop.is_set():
            raise KlarUploadStoppedError("The upload was stopped before this batch was sent.")
        started = time.monotonic()
        id_field = self.settings.id_field
        # The hook reads only the ids from ``records`` when ``encoded`` is given: small stand-ins suffice.
        stand_ins = [{id_field: item.id} for item in batch.items]
        send = self.sender.validate if self.settings.mode is UploadMode.VALIDATE else self.sender.upload
        result = send(self.settings.resource, stand_ins, encoded=batch.encoded)
        return result, time.monotonic() - started

    def _pump(self) -> None:
        """Submit queued batches, waiting for a free slot before each."""
        assert self._pool is not None
        while self._queue:
            while len(self._in_flight) >= self.settings.max_concurrency:
                self._harvest()
            job = self._queue.popleft()
            if not job.resend:
                # A killed try makes its retry re-send every span sent and not in the saved checkpoint:
                # keep those at most max_concurrency + 1, saving only when a new batch would exceed it
                # (when sending is the bottleneck that is every other batch; when reading is, rarer).
                if self._sent_open + self._sent_unsaved > self.settings.max_concurrency:
                    self._save(force=True)
                self._sent_open += 1
            self._in_flight[self._pool.submit(self._send, job.batch)] = job

    def _harvest(self) -> None:
        """Wait until at least one batch is answered (or the stop event is set); account for it."""
        while self._in_flight:
            if self.stop.is_set():
                raise KlarUploadStoppedError("The upload was stopped while batches were in flight.")
            done, _ = wait(self._in_flight, timeout=_POLL, return_when=FIRST_COMPLETED)
            if done:
                for future in done:
                    job = self._in_flight.pop(future)
                    result, seconds = future.result()
                    self._account(job, result, seconds)
                self._save()
                return

    def _abort(self, *, drain: bool) -> None:
        """Stop sending: cancel what has not started; account for what already came back."""
        self._queue.clear()
        if drain and not self.stop.is_set():
            # The source failed, not Klar: the batches in flight are worth finishing and recording.
            for future, job in list(self._in_flight.items()):
                try:
                    result, seconds = future.result()
                    self._account(job, result, seconds)
                except Exception:  # the first error is the one to report
                    continue
            self._in_flight.clear()
            return
        self.stop.set()
        for future, job in list(self._in_flight.items()):
            if future.cancel() or not future.done() or future.exception() is not None:
                continue
            result, seconds = future.result()
            try:
                self._account(job, result, seconds)
            except Exception:
                continue
        self._in_flight.clear()

    def _report_unfinished(self) -> None:
        """Hand the rejections of spans that will not finish (the run failed) to ``on_rejected``.

        They are not counted nor confirmed: a retry reads those positions again. But a failed run's
        rejected file must still hold the records it already knew to be rejected.
        """
        spans = dict(self._open)
        if self._span is not None:
            spans[self._span.number] = self._span
        if self.on_rejected is None:
            return
        for number in sorted(spans):
            for rejection in spans[number].rejections:
                try:
                    self.on_rejected(rejection)
                except Exception as err:  # the run's own error is the one to report
                    self.log.warning("Could not write a rejected record (%s).", err)
                    return

    def _account(self, job: _Send, result: KlarBatchResult, seconds: float) -> None:
        items = job.batch.items
        span = job.span
        if len(result.outcomes) != len(items):
            raise KlarResponseError(
                f"Klar's answer names {len(result.outcomes)} outcomes for a batch of {len(items)} records."
            )
        retry: list[BatchItem] = []
        for item, outcome in zip(items, result.outcomes, strict=True):
            state = outcome.state
            if state is OutcomeState.ACCEPTED:
                span.accepted += 1
            elif state is OutcomeState.NOT_STORED and not job.resend:
                retry.append(item)
            else:
                errors = outcome.errors
                if state is OutcomeState.NOT_STORED:
                    errors = (
                        FieldError(
                            "",
                            "Klar refused its batch twice for other records' errors and stored nothing of "
                            "it; the record itself was reported valid. Send it again.",
                        ),
                    )
                span.rejections.append(
                    Rejection(
                        item.ordinal,
                        item.source,
                        item.line,
                        outcome.id or item.id,
                        errors,
                        RejectionOrigin.KLAR,
                        item.encoded,
                    )
                )
        span.seconds += seconds
        span.pending -= 1
        if retry:
            # Klar stored nothing of a 400 batch: send its valid records again, once, without the bad ones.
            self.tally.resent_not_stored += len(retry)
            span.pending += 1
            # First in line: the sooner the span finishes, the sooner the checkpoint covers it.
            resend = Batch(retry, sum(len(i.encoded) + 1 for i in retry))
            self._queue.appendleft(_Send(resend, span, resend=True))
        if span.pending == 0:
            self._finish(span)

    # -- accounting -------------------------------------------------------------------------------

    def _finish(self, span: _Span) -> None:
        tally = self.tally
        tally.records += span.records
        tally.accepted += span.accepted
        tally.superseded += span.superseded
        if span.batch is not None:
            self._held.difference_update(item.key for item in span.batch.items)
            span.batch = None
        self._open.pop(span.number, None)
        if span.sent:
            tally.batches += 1
            self._sent_open -= 1
            self._sent_unsaved += 1
        for rejection in span.rejections:
            tally.add_rejection(rejection)
            if self.on_rejected is not None:
                self.on_rejected(rejection)
        if span.warnings is not None:
            tally.warnings.merge(span.warnings)
        self.confirmed.add(span.start, span.end)
        self._dirty = True
        self._log_span(span)

    def _log_span(self, span: _Span) -> None:
        tally = self.tally
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        rate = (tally.records - self._earlier_records) / elapsed
        progress = f"{tally.records:,} records so far"
        if self.total:
            progress = f"{tally.records:,} of {self.total:,} records"
            if rate > 0 and tally.records < self.total:
                progress += f", about {_duration((self.total - tally.records) / rate)} left"
        if span.sent:
            local = sum(1 for r in span.rejections if r.origin is RejectionOrigin.LOCAL)
            # Records refused locally were never sent: name them apart so the counts add up; so are
            # earlier versions replaced in the batch by a later one.
            superseded = f", {span.superseded} superseded by a later version" if span.superseded else ""
            self.log.info(
                "Batch %d: %d records sent, %d accepted, %d rejected by Klar, %d rejected locally%s, "
                "in %.2f s; %s at %.0f records/s.",
                tally.batches,
                span.sent,
                span.accepted,
                len(span.rejections) - local,
                local,
                superseded,
                span.seconds,
                progress,
                rate,
            )
        elif span.rejections:  # (a span of positions confirmed by an earlier try says nothing)
            self.log.info("%d records rejected locally, nothing to send; %s.", len(span.rejections), progress)


@contextmanager
def _older_objects_left_alone() -> Iterator[None]:
    """Keep Python's cyclic garbage collector to the objects made during the upload.

    A task process holds some hundreds of thousands of objects (Airflow, its providers, SQLAlchemy);
    each full collection walks them all, and an upload's batches in flight trigger one every few
    thousand records: 3 to 9 µs per record measured, a third of validating it. Frozen objects are only
    skipped, not kept alive: they are handed back to the collector when the upload ends.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
