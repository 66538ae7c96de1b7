"""When the engine saves its checkpoint: so that a killed try leaves at most ``max_concurrency + 1``
sent batches outside the saved checkpoint (all its retry sends again), without a save per batch."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from airflow_provider_klar.upload.ranges import PositionRanges
from airflow_provider_klar.upload.sources import iter_records
from tests.unit.test_pipeline import FakeHook, MemoryCheckpoint, engine, orders

BATCH = 10
RECORDS = 600


class Killed(BaseException):
    """The process dies: nothing after it runs, not even the engine's last checkpoint save."""


class KillableCheckpoint(MemoryCheckpoint):
    """A checkpoint store that stops taking saves once the process is "killed"."""

    def __init__(self) -> None:
        super().__init__()
        self.killed = False

    def save(self, state: dict[str, Any]) -> None:
        if not self.killed:
            super().save(state)

    @property
    def durable(self) -> int:
        """Positions the saved checkpoint covers."""
        return PositionRanges(self.state["confirmed"]).count if self.state else 0


@pytest.mark.parametrize("concurrency", [1, 2, 4, 8])
def test_at_every_send_at_most_max_concurrency_plus_one_batches_are_outside_the_saved_checkpoint(
    concurrency: int,
) -> None:
    store = KillableCheckpoint()
    hook = FakeHook()
    jitter = random.Random(concurrency)
    exposed: list[int] = []
    lock = threading.Lock()

    def on_call(number: int) -> None:
        with lock:
            # Records sent so far, this batch included, minus what a retry would skip.
            exposed.append(len(hook.sent_ids) - store.durable)
            pause = jitter.random() / 500
        time.sleep(pause)  # answers take varying time and come back out of order

    hook.on_call = on_call
    result = engine(hook, checkpoint=store, batch_size=BATCH, max_concurrency=concurrency).run(
        iter_records(orders(RECORDS))
    )

    batches = RECORDS // BATCH
    assert result.tally.accepted == RECORDS
    assert len(exposed) == batches
    assert max(exposed) <= (concurrency + 1) * BATCH, exposed
    # The bound costs fewer saves than one per batch (plus the periodic ones, none in so short a run).
    assert 0 < store.saves < batches


@pytest.mark.parametrize("kill_at", [7, 23, 41])
def test_a_retry_after_a_kill_resends_at_most_max_concurrency_plus_one_batches(kill_at: int) -> None:
    concurrency = 4
    store = KillableCheckpoint()
    first = FakeHook()

    def die(number: int) -> None:
        if number == kill_at:
            store.killed = True
            raise Killed

    first.on_call = die
    with pytest.raises(Killed):
        engine(first, checkpoint=store, batch_size=BATCH, max_concurrency=concurrency).run(
            iter_records(orders(RECORDS))
        )
    store.killed = False

    retry = FakeHook()
    result = engine(retry, checkpoint=store, batch_size=BATCH, max_concurrency=concurrency).run(
        iter_records(orders(RECORDS))
    )

    assert sorted(set(first.sent_ids) | set(retry.sent_ids)) == sorted(r["id"] for r in orders(RECORDS))
    resent = set(first.sent_ids) & set(retry.sent_ids)
    assert len(resent) <= (concurrency + 1) * BATCH, len(resent)
    assert result.resumed_records == RECORDS - len(retry.sent_ids)
