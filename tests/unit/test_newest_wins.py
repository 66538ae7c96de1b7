"""Newest wins: versions in one batch, hold-back of batches sharing keys, resume; with a Klar that
answers the newest waiting request first, so batches finish out of order."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from airflow_provider_klar.exceptions import KlarAuthError
from airflow_provider_klar.models import RecordValidator
from airflow_provider_klar.results import KlarBatchResult, OutcomeState, RecordOutcome
from airflow_provider_klar.sandbox.fake_data import fake_order
from airflow_provider_klar.upload.batching import BODY_OVERHEAD, Batch, Batcher, BatchItem
from airflow_provider_klar.upload.engine import EngineSettings, UploadEngine
from airflow_provider_klar.upload.sources import iter_records
from tests.unit.test_pipeline import MemoryCheckpoint

# -- the batcher ---------------------------------------------------------------------------------------


def item(n: int, key: str | None, size: int = 10) -> BatchItem:
    return BatchItem(n, key, b"x" * size, key=key)


def fill(batcher: Batcher, items: list[BatchItem]) -> list[Batch]:
    out = [b for b in (batcher.add(i) for i in items) if b is not None]
    last = batcher.flush()
    return [*out, last] if last is not None else out


def test_a_later_version_in_the_batch_replaces_the_earlier_one_where_it_stands() -> None:
    batches = fill(
        Batcher(batch_size=3, max_batch_bytes=10_000),
        [item(0, "A"), item(1, "B"), item(2, "A"), item(3, "A"), item(4, "C"), item(5, "D")],
    )
    assert [[i.ordinal for i in b.items] for b in batches] == [[3, 1, 4], [5]]
    assert [b.superseded for b in batches] == [2, 0]


def test_records_without_a_key_are_never_merged() -> None:
    batches = fill(Batcher(batch_size=10, max_batch_bytes=10_000), [item(n, None) for n in range(4)])
    assert [i.ordinal for i in batches[0].items] == [0, 1, 2, 3]
    assert batches[0].superseded == 0


def test_a_later_version_that_breaks_the_byte_cap_starts_the_next_batch() -> None:
    batcher = Batcher(batch_size=10, max_batch_bytes=1024)
    assert batcher.add(item(0, "A", 100)) is None
    assert batcher.add(item(1, "B", 700)) is None
    done = batcher.add(item(2, "A", 350))  # replacing 100 bytes by 350 would exceed 1024
    assert done is not None
    assert [i.ordinal for i in done.items] == [0, 1]
    assert done.superseded == 0
    rest = batcher.flush()
    assert rest is not None
    assert [i.ordinal for i in rest.items] == [2]
    # The replacement also keeps the byte count right.
    batcher.add(item(3, "C", 100))
    batcher.add(item(4, "C", 200))
    last = batcher.flush()
    assert last is not None
    assert last.nbytes == BODY_OVERHEAD + sum(len(e) + 1 for e in last.encoded)
    assert [i.ordinal for i in last.items] == [4]


# -- a Klar that answers out of order ------------------------------------------------------------------


class OutOfOrderKlar:
    """Stores a batch when it answers it, and answers the newest waiting request first.

    A request is answered once it is the newest one waiting and either ``hold`` requests wait or no new
    one came for a moment (the engine may be holding a batch back). Waiting only shapes the order of
    answers; nothing asserted depends on it. ``overlaps`` lists every request that arrived while an
    unanswered one carried one of its ids. ``fail_on`` maps a request number to an error raised instead
    of storing.
    """

    def __init__(self, *, hold: int, fail_on: Mapping[int, Exception] | None = None) -> None:
        self.hold = hold
        self.fail_on = dict(fail_on or {})
        self.cond = threading.Condition()
        self.waiting: list[int] = []
        self.last_arrival = time.monotonic()
        self.in_flight: dict[str, int] = {}
        self.overlaps: list[tuple[int, set[str]]] = []
        self.store: dict[str, dict[str, Any]] = {}
        self.calls: list[list[str]] = []
        self.answer_order: list[int] = []

    def upload(
        self, resource: str, records: Sequence[Mapping[str, Any]], *, encoded: Sequence[bytes] | None = None
    ) -> KlarBatchResult:
        assert encoded is not None
        decoded = [json.loads(part) for part in encoded]
        ids = [r["id"] for r in decoded]
        assert len(set(ids)) == len(ids), "a batch carries one version per id"
        with self.cond:
            self.calls.append(ids)
            number = len(self.calls)
            clash = {i for i in ids if self.in_flight.get(i)}
            if clash:
                self.overlaps.append((number, clash))
            for i in ids:
                self.in_flight[i] = self.in_flight.get(i, 0) + 1
            self.waiting.append(number)
            self.last_arrival = time.monotonic()
            self.cond.notify_all()
            while not (
                self.waiting[-1] == number
                and (len(self.waiting) >= self.hold or time.monotonic() - self.last_arrival > 0.03)
            ):
                self.cond.wait(0.01)
            self.waiting.remove(number)
            self.answer_order.append(number)
            for i in ids:
                self.in_flight[i] -= 1
            failure = self.fail_on.get(number)
            if failure is None:
                for record in decoded:
                    self.store[record["id"]] = record
            self.cond.notify_all()
        if failure is not None:
            raise failure
        outcomes = tuple(RecordOutcome(n, i, OutcomeState.ACCEPTED, ()) for n, i in enumerate(ids))
        return KlarBatchResult(resource, "07.2025", "upload", 201, outcomes)

    validate = upload

    def settle(self) -> None:
        """Wait until every request received was answered."""
        with self.cond:
            assert self.cond.wait_for(lambda: not self.waiting, timeout=30)


def versions(ids: int, per_id: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """Orders ``ORD-0..`` in ``per_id`` versions each, shuffled; ``updatedAt`` grows with the version."""
    rng = random.Random(seed)
    events = [n for n in range(ids) for _ in range(per_id)]
    rng.shuffle(events)
    seen: dict[int, int] = {}
    out = []
    base = {n: fake_order(n) for n in range(ids)}
    for n in events:
        version = seen.get(n, 0)
        seen[n] = version + 1
        record = dict(base[n])
        record["updatedAt"] = 1_700_000_000 + version
        record["financialStatus"] = "paid" if version == per_id - 1 else "pending"
        out.append(record)
    return out


def newest(records: list[dict[str, Any]]) -> dict[str, int]:
    return {r["id"]: r["updatedAt"] for r in records}  # later ones overwrite earlier ones


def run(klar: OutOfOrderKlar, records: list[dict[str, Any]], **kw: Any) -> Any:
    checkpoint = kw.pop("checkpoint", None)
    settings = EngineSettings(**({"resource": "orders", "api_version": "07.2025", "batch_size": 10} | kw))
    engine = UploadEngine(
        settings, klar, validator=RecordValidator("orders", "07.2025"), checkpoint=checkpoint
    )
    return engine.run(iter_records(records))


def test_klar_ends_with_the_newest_version_of_every_id_whatever_order_batches_finish_in() -> None:
    records = versions(150, 3)
    klar = OutOfOrderKlar(hold=4)
    result = run(klar, records, max_concurrency=4)

    assert klar.answer_order != sorted(klar.answer_order), "the fake must answer out of order"
    assert not klar.overlaps, klar.overlaps[:3]
    assert {i: r["updatedAt"] for i, r in klar.store.items()} == newest(records)
    tally = result.tally
    sent = sum(len(c) for c in klar.calls)
    assert tally.superseded > 0
    assert (tally.records, tally.accepted, tally.rejected) == (450, sent, 0)
    assert tally.accepted + tally.superseded == tally.records
    assert result.held_back > 0


def test_batches_without_shared_ids_still_go_out_concurrently() -> None:
    records = [fake_order(n) for n in range(200)]
    klar = OutOfOrderKlar(hold=4)
    result = run(klar, records, max_concurrency=4)
    assert result.held_back == 0
    assert result.tally.superseded == 0
    assert klar.answer_order != sorted(klar.answer_order)


def test_cogs_rows_of_one_order_are_distinct_unless_their_whole_key_matches() -> None:
    rows = [
        {"orderId": "O-1", "lineItemId": "L-1", "productCogs": 1.0},
        {"orderId": "O-1", "lineItemId": "L-2", "productCogs": 2.0},
        {"orderId": "O-1", "sku": "S-1", "productCogs": 3.0},
        {"orderId": "O-1", "lineItemId": "L-1", "productCogs": 4.0},
    ]
    sent: list[list[bytes]] = []

    class Cogs:
        def upload(self, resource: str, records: Any, *, encoded: Any = None) -> KlarBatchResult:
            sent.append(list(encoded))
            outcomes = tuple(RecordOutcome(n, "O-1", OutcomeState.ACCEPTED, ()) for n in range(len(encoded)))
            return KlarBatchResult(resource, "12.2022", "upload", 201, outcomes)

        validate = upload

    settings = EngineSettings(
        resource="cogs",
        api_version="12.2022",
        id_field="orderId",
        key_fields=("orderId", "lineItemId", "sku"),
    )
    result = UploadEngine(settings, Cogs(), validator=RecordValidator("cogs", "12.2022")).run(
        iter_records(rows)
    )
    assert [json.loads(b)["productCogs"] for b in sent[0]] == [4.0, 2.0, 3.0]
    assert result.tally.superseded == 1


def test_a_resumed_try_never_sends_a_version_older_than_one_already_confirmed() -> None:
    records = versions(150, 3, seed=11)
    store = MemoryCheckpoint()
    first = OutOfOrderKlar(hold=4, fail_on={12: KlarAuthError("Klar answered 401.")})
    with pytest.raises(KlarAuthError):
        run(first, records, max_concurrency=4, checkpoint=store, checkpoint_interval=0.0)
    assert store.state is not None
    confirmed = store.state["confirmed"]
    assert confirmed, "the first try confirmed some batches"
    done = {p for start, end in confirmed for p in range(start, end + 1)}
    assert len(done) < len(records)

    # The first try's process is gone; what it had in flight was answered (and stored) meanwhile.
    first.settle()
    # Confirmed positions are closed under "an earlier version of the same id".
    positions: dict[str, list[int]] = {}
    for position, record in enumerate(records):
        positions.setdefault(record["id"], []).append(position)
    for ordered in positions.values():
        for i, position in enumerate(ordered):
            if position in done:
                assert all(p in done for p in ordered[:i]), (ordered, sorted(done))

    second = OutOfOrderKlar(hold=4)
    second.store = dict(first.store)
    result = run(second, records, max_concurrency=4, checkpoint=store)

    assert {i: r["updatedAt"] for i, r in second.store.items()} == newest(records)
    assert not second.overlaps
    assert result.tally.records == len(records)
    assert result.resumed_records == len(done)


@pytest.mark.parametrize("workers", [1, 2])
def test_cogs_keys_are_the_same_with_validation_workers(tmp_path: Any, workers: int) -> None:
    from airflow_provider_klar.upload.sources import iter_path

    rows = [
        {"orderId": f"O-{n // 3}", "lineItemId": f"L-{n % 2}", "productCogs": float(n)} for n in range(60)
    ]
    path = tmp_path / "cogs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sent: list[list[bytes]] = []

    class Cogs:
        def upload(self, resource: str, records: Any, *, encoded: Any = None) -> KlarBatchResult:
            sent.append(list(encoded))
            outcomes = tuple(RecordOutcome(n, None, OutcomeState.ACCEPTED, ()) for n in range(len(encoded)))
            return KlarBatchResult(resource, "12.2022", "upload", 201, outcomes)

        validate = upload

    settings = EngineSettings(
        resource="cogs",
        api_version="12.2022",
        id_field="orderId",
        key_fields=("orderId", "lineItemId", "sku"),
        batch_size=1000,
        validation_workers=workers,
    )
    engine = UploadEngine(settings, Cogs(), validator=RecordValidator("cogs", "12.2022"))
    result = engine.run(iter_path(str(path), resource="cogs"))
    newest = {(r["orderId"], r["lineItemId"]): r["productCogs"] for r in rows}
    got = {(r["orderId"], r["lineItemId"]): r["productCogs"] for r in map(json.loads, sent[0])}
    assert got == newest
    assert len(sent[0]) == len(newest)
    assert result.tally.superseded == len(rows) - len(newest)
