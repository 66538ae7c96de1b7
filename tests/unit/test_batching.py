"""The batcher: record and byte caps, one record over the cap, flushing; and the position ranges."""

from __future__ import annotations

import pytest

from airflow_provider_klar.upload.batching import Batch, Batcher, BatchItem, check_limits
from airflow_provider_klar.upload.ranges import PositionRanges


def item(n: int, size: int = 10) -> BatchItem:
    return BatchItem(n, f"ORD-{n}", b"x" * size)


def fill(batcher: Batcher, items: list[BatchItem]) -> list[Batch]:
    out = [b for b in (batcher.add(i) for i in items) if b is not None]
    last = batcher.flush()
    return [*out, last] if last is not None else out


def test_batches_hold_at_most_batch_size_records() -> None:
    batches = fill(Batcher(batch_size=4, max_batch_bytes=10_000), [item(n) for n in range(10)])
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [i.ordinal for b in batches for i in b.items] == list(range(10))


def test_batches_stay_under_the_byte_cap_counting_commas_and_brackets() -> None:
    batches = fill(Batcher(batch_size=1000, max_batch_bytes=1024), [item(n, 100) for n in range(25)])
    for batch in batches:
        body = b"[" + b",".join(batch.encoded) + b"]"
        assert len(body) <= batch.nbytes <= 1024
    assert sum(len(b) for b in batches) == 25
    assert [len(b) for b in batches] == [9, 9, 7]  # (1024 - BODY_OVERHEAD) // 101 records fit


def test_a_record_that_does_not_fit_starts_the_next_batch() -> None:
    batcher = Batcher(batch_size=10, max_batch_bytes=1024)
    assert batcher.add(item(0, 600)) is None
    done = batcher.add(item(1, 600))
    assert done is not None
    assert [i.ordinal for i in done.items] == [0]
    assert batcher.pending() == 1


def test_one_record_over_the_cap_is_refused_with_a_clear_reason() -> None:
    batcher = Batcher(batch_size=10, max_batch_bytes=2048)
    assert batcher.too_large(b"x" * 100) is None
    why = batcher.too_large(b"x" * 5000)
    assert why is not None
    assert "5,000 bytes" in why
    assert "max_batch_bytes=2,048" in why
    with pytest.raises(ValueError, match="max_batch_bytes"):
        batcher.add(item(0, 5000))


def test_batch_size_one_sends_each_record_alone() -> None:
    batches = fill(Batcher(batch_size=1), [item(n) for n in range(3)])
    assert [len(b) for b in batches] == [1, 1, 1]


@pytest.mark.parametrize("size", [0, 1001, 5000, "10", True])
def test_batch_size_must_be_1_to_1000(size: object) -> None:
    with pytest.raises(ValueError, match="batch_size must be an integer from 1 to 1000"):
        check_limits(size, 10_000)  # type: ignore[arg-type]


def test_the_byte_cap_has_a_floor() -> None:
    with pytest.raises(ValueError, match="max_batch_bytes"):
        check_limits(10, 100)


def test_position_ranges_merge_out_of_order_additions() -> None:
    ranges = PositionRanges()
    ranges.add(20, 29)
    ranges.add(0, 9)
    assert ranges.to_list() == [[0, 9], [20, 29]]
    assert 5 in ranges
    assert 15 not in ranges
    assert 29 in ranges
    assert 30 not in ranges
    ranges.add(10, 19)
    assert ranges.to_list() == [[0, 29]]
    assert ranges.count == 30
    ranges.add(40, 39)  # empty
    ranges.add(31, 35)
    ranges.add(30, 30)
    assert ranges.to_list() == [[0, 35]]
    assert PositionRanges(ranges.to_list()) == ranges


def test_position_ranges_reject_garbage() -> None:
    with pytest.raises(ValueError, match="pair"):
        PositionRanges([[1, 2, 3]])
    with pytest.raises(ValueError, match="negative"):
        PositionRanges([[-1, 2]])
