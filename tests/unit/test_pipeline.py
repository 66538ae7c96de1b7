"""The upload engine with a fake hook: outcomes, re-sends, concurrency, memory bound, stopping, resume."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from airflow_provider_klar.exceptions import (
    KlarAuthError,
    KlarError,
    KlarSourceError,
    KlarTransientError,
    KlarUploadStoppedError,
)
from airflow_provider_klar.models import RecordValidator
from airflow_provider_klar.results import FieldError, KlarBatchResult, OutcomeState, RecordOutcome
from airflow_provider_klar.sandbox.fake_data import fake_orders
from airflow_provider_klar.upload.accounting import RejectionOrigin
from airflow_provider_klar.upload.engine import EngineSettings, UploadEngine, UploadMode
from airflow_provider_klar.upload.sources import iter_records


class FakeHook:
    """Answers like Klar: a record with ``"bad": true`` is rejected; in a 400 batch the rest is not stored.

    ``status`` chooses the shape: ``400`` (Klar stores nothing of a batch with a bad record) or ``207``
    (it stores the good ones). ``fail_on`` maps a call number (1-based) to an exception to raise.
    """

    def __init__(self, *, status: int = 400, fail_on: Mapping[int, Exception] | None = None) -> None:
        self.status = status
        self.fail_on = dict(fail_on or {})
        self.lock = threading.Lock()
        self.calls: list[list[str]] = []
        self.modes: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.gate: threading.Condition | None = None
        self.target = 0
        self.on_call: Any = None

    def upload(
        self, resource: str, records: Sequence[Mapping[str, Any]], *, encoded: Sequence[bytes] | None = None
    ) -> KlarBatchResult:
        return self._answer("upload", resource, records, encoded)

    def validate(
        self, resource: str, records: Sequence[Mapping[str, Any]], *, encoded: Sequence[bytes] | None = None
    ) -> KlarBatchResult:
        return self._answer("validate", resource, records, encoded)

    def _answer(
        self, mode: str, resource: str, records: Sequence[Mapping[str, Any]], encoded: Sequence[bytes] | None
    ) -> KlarBatchResult:
        assert encoded is not None
        assert len(encoded) == len(records)
        decoded = [json.loads(part) for part in encoded]
        assert [r["id"] for r in decoded] == [r["id"] for r in records]
        with self.lock:
            self.calls.append([r["id"] for r in decoded])
            self.modes.append(mode)
            number = len(self.calls)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if self.on_call is not None:
                self.on_call(number)
            if self.gate is not None:
                with self.gate:
                    self.gate.notify_all()
                    # Hold the first batches until the engine has as many in flight as it may (bounded wait).
                    self.gate.wait_for(lambda: self.peak >= self.target, timeout=5)
            if number in self.fail_on:
                raise self.fail_on[number]
            bad = [i for i, r in enumerate(decoded) if r.get("bad")]
            outcomes = []
            for i, r in enumerate(decoded):
                if i in bad:
                    state = OutcomeState.REJECTED
                    errors: tuple[FieldError, ...] = (
                        FieldError("lineItems.0.sku", "sku must be a string", 1),
                    )
                elif bad and self.status == 400:
                    state, errors = OutcomeState.NOT_STORED, ()
                else:
                    state, errors = OutcomeState.ACCEPTED, ()
                outcomes.append(RecordOutcome(i, r["id"], state, errors))
            code = (self.status if bad else 201) if mode == "upload" else (400 if bad else 201)
            return KlarBatchResult(resource, "07.2025", mode, code, tuple(outcomes))
        finally:
            with self.lock:
                self.in_flight -= 1

    @property
    def sent_ids(self) -> list[str]:
        return [i for call in self.calls for i in call]


class MemoryCheckpoint:
    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.saves = 0
        self.cleared = False

    def load(self) -> dict[str, Any] | None:
        return json.loads(json.dumps(self.state)) if self.state is not None else None

    def save(self, state: dict[str, Any]) -> None:
        self.state = json.loads(json.dumps(state))  # what a Variable would hold: JSON
        self.saves += 1

    def clear(self) -> None:
        self.state, self.cleared = None, True


def orders(n: int, *, start: int = 0, bad: Sequence[int] = ()) -> list[dict[str, Any]]:
    out = list(fake_orders(n, start=start))
    for i in bad:
        out[i - start]["bad"] = True  # an unknown field: valid locally, refused by the fake Klar
    return out


def settings(**kw: Any) -> EngineSettings:
    base: dict[str, Any] = {"resource": "orders", "api_version": "07.2025", "batch_size": 10}
    return EngineSettings(**(base | kw))


def engine(hook: FakeHook, *, validate: bool = True, **kw: Any) -> UploadEngine:
    checkpoint = kw.pop("checkpoint", None)
    stop = kw.pop("stop", None)
    return UploadEngine(
        settings(**kw),
        hook,
        validator=RecordValidator("orders", "07.2025") if validate else None,
        checkpoint=checkpoint,
        stop=stop,
    )


def test_every_record_is_accounted_for_with_local_and_klar_rejections() -> None:
    records = orders(35, bad=[3, 21])
    records[7]["createdAt"] = "yesterday"  # invalid locally: never sent
    records[30] = {"id": 5}  # invalid locally (numeric id, nothing else)
    hook = FakeHook(status=207)
    rejected: list[Any] = []
    eng = engine(hook)
    eng.on_rejected = rejected.append
    result = eng.run(iter_records(records))

    tally = result.tally
    assert (tally.records, tally.accepted, tally.rejected) == (35, 31, 4)
    assert (tally.rejected_local, tally.rejected_klar) == (2, 2)
    assert "ORD-7" not in hook.sent_ids
    assert len(hook.sent_ids) == 33
    assert sorted(r.ordinal for r in rejected) == [3, 7, 21, 30]
    by_ordinal = {r.ordinal: r for r in rejected}
    assert by_ordinal[7].origin is RejectionOrigin.LOCAL
    assert by_ordinal[7].id == "ORD-7"
    assert by_ordinal[7].label == "record 7"
    assert any(e.path == "createdAt" for e in by_ordinal[7].errors)
    assert by_ordinal[21].origin is RejectionOrigin.KLAR
    assert by_ordinal[21].errors[0].path == "lineItems.0.sku"
    assert json.loads(by_ordinal[21].record)["id"] == "ORD-21"
    assert set(tally.rejected_ids) == {"ORD-3", "ORD-7", "ORD-21", "5"}
    assert any(line.startswith("record 7 (id ORD-7): createdAt") for line in tally.errors)
    assert tally.batches == 4
    assert tally.warnings.unknown_fields == {"bad": 2}


def test_records_klar_did_not_store_are_sent_again_once_without_the_rejected() -> None:
    hook = FakeHook(status=400)
    result = engine(hook).run(iter_records(orders(10, bad=[2, 5])))

    assert len(hook.calls) == 2
    assert hook.calls[1] == [f"ORD-{i}" for i in range(10) if i not in (2, 5)]
    tally = result.tally
    assert (tally.accepted, tally.rejected_klar, tally.resent_not_stored, tally.batches) == (8, 2, 8, 1)


def test_records_refused_twice_for_others_errors_count_as_rejected_with_a_reason() -> None:
    hook = FakeHook(status=400)
    original = hook._answer

    def twice(mode: str, resource: str, records: Any, encoded: Any) -> KlarBatchResult:
        result = original(mode, resource, records, encoded)
        if len(hook.calls) == 2:  # the re-send: pretend Klar refused it again for another record
            outcomes = tuple(
                RecordOutcome(o.index, o.id, OutcomeState.NOT_STORED if o.index else OutcomeState.REJECTED)
                for o in result.outcomes
            )
            return KlarBatchResult(resource, "07.2025", mode, 400, outcomes)
        return result

    hook._answer = twice  # type: ignore[method-assign]
    result = engine(hook).run(iter_records(orders(4, bad=[0])))
    assert len(hook.calls) == 2
    assert (result.tally.accepted, result.tally.rejected) == (0, 4)
    assert any("refused its batch twice" in line for line in result.tally.errors)


def test_validate_mode_sends_to_validate() -> None:
    hook = FakeHook()
    result = engine(hook, mode=UploadMode.VALIDATE).run(iter_records(orders(12)))
    assert set(hook.modes) == {"validate"}
    assert result.tally.accepted == 12


def test_without_local_validation_invalid_records_reach_klar() -> None:
    records = orders(3)
    records[1]["createdAt"] = "yesterday"
    hook = FakeHook()
    result = engine(hook, validate=False).run(iter_records(records))
    assert hook.sent_ids == ["ORD-0", "ORD-1", "ORD-2"]
    assert result.tally.accepted == 3


def test_up_to_max_concurrency_batches_are_in_flight_and_never_more() -> None:
    hook = FakeHook()
    hook.gate = threading.Condition()
    hook.target = 4
    result = engine(hook, max_concurrency=4, batch_size=5).run(iter_records(orders(60)))
    assert hook.peak == 4
    assert result.tally.accepted == 60
    assert len(hook.calls) == 12


def test_the_source_is_read_only_as_far_as_the_batches_in_flight_need() -> None:
    consumed = 0
    sent_when: list[int] = []

    def source() -> Iterator[dict[str, Any]]:
        nonlocal consumed
        for record in fake_orders(200):
            consumed += 1
            yield record

    hook = FakeHook()
    hook.on_call = lambda number: sent_when.append(consumed)
    engine(hook, batch_size=10, max_concurrency=3).run(iter_records(source()))
    # When batch n starts, the reader is at most (max_concurrency + 1) batches ahead of it.
    for number, at in enumerate(sent_when, start=1):
        assert at <= number * 10 + (3 + 1) * 10


def test_a_fatal_error_stops_promptly_and_reads_no_further() -> None:
    consumed = 0

    def endless() -> Iterator[dict[str, Any]]:
        nonlocal consumed
        n = 0
        while True:
            consumed += 1
            yield from fake_orders(1, start=n)
            n += 1

    hook = FakeHook(fail_on={1: KlarAuthError("Klar answered 401: check the token of klar_default.")})
    with pytest.raises(KlarAuthError, match="401"):
        engine(hook, batch_size=10, max_concurrency=2).run(iter_records(endless()))
    assert consumed < 200


def test_stop_event_ends_the_run_from_another_thread() -> None:
    stop = threading.Event()
    hook = FakeHook()
    hook.on_call = lambda number: stop.set() if number == 2 else None
    with pytest.raises(KlarUploadStoppedError, match="stopped"):
        engine(hook, batch_size=10, max_concurrency=1, stop=stop).run(iter_records(orders(100)))
    assert len(hook.calls) <= 3


def test_a_request_cut_short_by_the_stop_reports_the_stop_not_its_own_error() -> None:
    # on_kill sets the stop and closes the hook: a request in flight then fails with the closed client's
    # error, and the engine may see that failed batch before it next looks at the stop event.
    stop = threading.Event()
    closed = KlarError("The Klar hook was closed while a request waited for its turn.")

    def kill(number: int) -> None:
        if number == 2:
            stop.set()
            raise closed

    hook = FakeHook()
    hook.on_call = kill
    with pytest.raises(KlarUploadStoppedError, match="stopped while batches were in flight") as info:
        engine(hook, batch_size=10, max_concurrency=1, stop=stop).run(iter_records(orders(100)))
    assert info.value.__cause__ is closed
    assert len(hook.calls) == 2


def test_an_error_without_a_stop_is_raised_as_it_is() -> None:
    hook = FakeHook(fail_on={2: KlarError("Klar answered something odd.")})
    with pytest.raises(KlarError, match="something odd") as info:
        engine(hook, batch_size=10, max_concurrency=1).run(iter_records(orders(100)))
    assert not isinstance(info.value, KlarUploadStoppedError)


def test_a_failed_try_is_resumed_without_sending_confirmed_batches_again() -> None:
    records = orders(95, bad=[12])
    records[50]["createdAt"] = -5  # rejected locally in the first try
    store = MemoryCheckpoint()
    first = FakeHook(status=400, fail_on={4: KlarTransientError("Klar answered 503 five times.")})
    with pytest.raises(KlarTransientError):
        engine(first, checkpoint=store, max_concurrency=1).run(iter_records(records))
    assert store.state is not None
    assert store.state["confirmed"] == [[0, 19]]  # batch 1 (re-sent once without ORD-12) and batch 2
    assert first.calls[2] == [f"ORD-{i}" for i in range(10, 20) if i != 12]  # the re-send goes first
    assert first.calls[3] == [f"ORD-{i}" for i in range(20, 30)]

    second = FakeHook(status=400)
    eng = engine(second, checkpoint=store, max_concurrency=1)
    result = eng.run(iter_records(records))
    assert second.sent_ids[0] == "ORD-20"
    assert "ORD-5" not in second.sent_ids
    assert sorted(set(first.sent_ids[:20]) | set(second.sent_ids)) == sorted(
        r["id"] for i, r in enumerate(records) if i != 50
    )
    tally = result.tally
    assert (tally.records, tally.accepted, tally.rejected, tally.batches) == (95, 93, 2, 10)
    assert result.resumed_records == 20
    assert result.skipped_batches == 2
    assert set(tally.rejected_ids) == {"ORD-12", "ORD-50"}
    eng.clear_checkpoint()
    assert store.cleared
    assert store.state is None


def test_a_checkpoint_of_another_upload_is_ignored() -> None:
    store = MemoryCheckpoint()
    store.state = {
        "format": 1,
        "resource": "refunds",
        "api_version": "12.2022",
        "mode": "upload",
        "source": "records",
        "confirmed": [[0, 9]],
        "tally": {"records": 10, "accepted": 10},
    }
    hook = FakeHook()
    result = engine(hook, checkpoint=store).run(iter_records(orders(10)))
    assert len(hook.sent_ids) == 10
    assert result.tally.accepted == 10
    assert result.resumed_records == 0


def test_a_source_error_mid_stream_keeps_the_batches_already_answered() -> None:
    def broken() -> Iterator[dict[str, Any]]:
        yield from fake_orders(25)
        raise OSError("the export was truncated")

    store = MemoryCheckpoint()
    hook = FakeHook()
    eng = engine(hook, checkpoint=store, max_concurrency=2)
    with pytest.raises(KlarSourceError, match="Reading records failed after 25 records: OSError: the export"):
        eng.run(iter_records(broken()))
    result = eng.result
    assert result is not None
    # What was read is sent (the partial batch too) and saved; the result says the rest was not read.
    assert store.state is not None
    assert store.state["confirmed"] == [[0, 24]]
    assert store.state["tally"]["accepted"] == 25
    assert result.unread is not None
    assert not result.complete
    assert result.unread.to_dict() == {
        "source": "records",
        "after": 25,
        "last": "record 24",
        "reason": "OSError: the export was truncated",
    }


def test_resume_with_batches_in_flight_counts_every_record_once() -> None:
    records = orders(200, bad=[33])
    store = MemoryCheckpoint()
    first = FakeHook(status=400, fail_on={7: KlarAuthError("Klar answered 401.")})
    with pytest.raises(KlarAuthError):
        engine(first, checkpoint=store, max_concurrency=3).run(iter_records(records))
    assert store.state is not None
    confirmed = store.state["confirmed"]
    confirmed_ids = {f"ORD-{i}" for start, end in confirmed for i in range(start, end + 1)}
    assert len(confirmed_ids) >= 30  # at least the first batches, before the failing 7th request

    second = FakeHook(status=400)
    result = engine(second, checkpoint=store, max_concurrency=3).run(iter_records(records))
    # Nothing confirmed is sent again; what was in flight when the first try failed may be.
    assert not confirmed_ids & set(second.sent_ids)
    assert set(first.sent_ids) | set(second.sent_ids) >= {r["id"] for r in records}
    tally = result.tally
    assert (tally.records, tally.accepted, tally.rejected) == (200, 199, 1)
    assert result.resumed_records == len(confirmed_ids)


def test_resume_skips_every_confirmed_range_even_with_gaps() -> None:
    store = MemoryCheckpoint()
    store.state = {
        "format": 1,
        "resource": "orders",
        "api_version": "07.2025",
        "mode": "upload",
        "source": "records",
        "confirmed": [[0, 9], [20, 29], [35, 35]],
        "tally": {"records": 21, "accepted": 21, "batches": 3},
    }
    hook = FakeHook()
    result = engine(hook, checkpoint=store, max_concurrency=1).run(iter_records(orders(40)))
    expected = [f"ORD-{i}" for i in [*range(10, 20), *range(30, 35), *range(36, 40)]]
    assert hook.sent_ids == expected
    assert result.resumed_records == 21
    assert (result.tally.records, result.tally.accepted, result.tally.batches) == (40, 40, 5)


def test_batch_log_lines_add_up(caplog: pytest.LogCaptureFixture) -> None:
    # Locally rejected records are never sent; the batch line counts them apart from Klar's rejections.
    records = orders(11, bad=[4])
    records[2]["createdAt"] = "yesterday"
    caplog.set_level("INFO")
    engine(FakeHook(status=207), max_concurrency=1).run(iter_records(records))

    # 11 records, one refused locally: a single batch of the 10 valid ones, one of which Klar refuses.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Batch ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "Batch 1: 10 records sent, 9 accepted, 1 rejected by Klar, 1 rejected locally, in "
    ), lines
