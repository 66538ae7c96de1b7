"""Group encoded records into request-sized batches: at most ``batch_size`` records and a byte cap.

A batch holds at most one version of each record key: a later version replaces the earlier one in
place (newest wins, in source order), and the replaced one is counted as superseded.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from airflow_provider_klar.resources import MAX_BATCH_SIZE

#: Default byte cap of one request body. 1000 realistic orders take about 2 MB as JSON; the cap leaves
#: room for larger orders while keeping one request (and its retries) well below common proxy limits.
DEFAULT_MAX_BATCH_BYTES = 5 * 1024 * 1024

#: Bytes a request body adds around the records: the brackets and a possible ``{"items": ...}`` wrapper.
BODY_OVERHEAD = 16


@dataclass(slots=True)
class BatchItem:
    """One record ready to send.

    :param ordinal: The record's position in the whole source stream (0-based), used by checkpoints.
    :param id: The record's id, when known.
    :param encoded: The record as compact JSON bytes, exactly as it goes on the wire.
    :param source: The file the record came from, or ``records``.
    :param line: Its line number or item index in that source, if known.
    :param key: The record's upsert key (its id, or the tuple of a resource keyed by several fields);
        ``None`` when it has none that can be read, so that it cannot collide with any other record.
    """

    ordinal: int
    id: str | None
    encoded: bytes
    source: str = "records"
    line: int | None = None
    key: Hashable | None = None


@dataclass(slots=True)
class Batch:
    """Records sent together in one request.

    :param items: The records, in the order sent.
    :param nbytes: Size of the request body the records make, overhead included.
    :param superseded: Records read into this batch and then replaced by a later version of the same
        key read into it too; they are not sent.
    """

    items: list[BatchItem] = field(default_factory=list)
    nbytes: int = BODY_OVERHEAD
    superseded: int = 0

    def __len__(self) -> int:
        return len(self.items)

    @property
    def encoded(self) -> list[bytes]:
        """The encoded records, in the order sent."""
        return [item.encoded for item in self.items]


def record_cost(encoded: bytes) -> int:
    """Return the bytes a record adds to a request body: itself and the comma that separates it."""
    return len(encoded) + 1


class Batcher:
    """Fill batches record by record; hand out each batch as soon as it is full.

    A batch is full when it holds ``batch_size`` records, or when the next record would push the request
    body past ``max_batch_bytes``. One record that alone exceeds the cap cannot be sent at all; callers
    ask :meth:`too_large` first and reject such a record.

    :param batch_size: Most records per request (1 to 1000, Klar's maximum).
    :param max_batch_bytes: Most bytes per request body.
    :raises ValueError: When a limit is out of range.
    """

    def __init__(self, batch_size: int = MAX_BATCH_SIZE, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES):
        check_limits(batch_size, max_batch_bytes)
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self._current = Batch()
        # Key -> index in the batch being filled, for the records that have a key.
        self._keys: dict[Hashable, int] = {}

    def too_large(self, encoded: bytes) -> str | None:
        """Return why a record can never be sent within the byte cap, or ``None`` when it fits.

        :param encoded: The record as JSON bytes.
        """
        size = BODY_OVERHEAD + record_cost(encoded)
        if size <= self.max_batch_bytes:
            return None
        return (
            f"The record is {len(encoded):,} bytes as JSON, more than one request may carry "
            f"(max_batch_bytes={self.max_batch_bytes:,}); raise max_batch_bytes or shrink the record."
        )

    def add(self, item: BatchItem) -> Batch | None:
        """Add a record; return a batch that is complete because of it, if any.

        The returned batch is either the previous contents (when ``item`` did not fit and starts the next
        batch) or the contents including ``item`` (when it made the batch reach ``batch_size``).

        A record whose key is already in the batch being filled replaces that earlier version where it
        stands (the earlier one counts in :attr:`Batch.superseded`). When the replacement would break the
        byte cap, the batch is complete without it and it starts the next one, like any record that does
        not fit; the caller then orders the two batches by key.

        :param item: The record to add.
        :raises ValueError: When the record alone exceeds ``max_batch_bytes`` (see :meth:`too_large`).
        """
        cost = record_cost(item.encoded)
        if BODY_OVERHEAD + cost > self.max_batch_bytes:
            raise ValueError(self.too_large(item.encoded))
        current = self._current
        key = item.key
        if key is not None:
            index = self._keys.get(key)
            if index is not None:
                old = current.items[index]
                nbytes = current.nbytes - record_cost(old.encoded) + cost
                if nbytes <= self.max_batch_bytes:
                    current.items[index] = item
                    current.nbytes = nbytes
                    current.superseded += 1
                    return None
        done: Batch | None = None
        if current.items and current.nbytes + cost > self.max_batch_bytes:
            done, current = current, Batch()
            self._keys = {}
        if key is not None:
            self._keys[key] = len(current.items)
        current.items.append(item)
        current.nbytes += cost
        # At most one batch completes per record: after an overflow the fresh batch holds one item, and
        # with batch_size == 1 no batch ever holds a record when the next arrives, so none overflows.
        if done is None and len(current.items) >= self.batch_size:
            done, current = current, Batch()
            self._keys = {}
        self._current = current
        return done

    def pending(self) -> int:
        """How many records wait in the batch being filled."""
        return len(self._current.items)

    def flush(self) -> Batch | None:
        """Return the partly filled batch, if it holds any record, and start a new one."""
        if not self._current.items:
            return None
        done, self._current = self._current, Batch()
        self._keys = {}
        return done


def check_limits(batch_size: int, max_batch_bytes: int) -> None:
    """Raise ``ValueError`` when ``batch_size`` or ``max_batch_bytes`` is out of range.

    :param batch_size: Most records per request.
    :param max_batch_bytes: Most bytes per request body.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise ValueError(
            f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE} (Klar takes at most "
            f"{MAX_BATCH_SIZE} records per request), got {batch_size!r}."
        )
    if isinstance(max_batch_bytes, bool) or not isinstance(max_batch_bytes, int) or max_batch_bytes < 1024:
        raise ValueError(f"max_batch_bytes must be an integer of at least 1024, got {max_batch_bytes!r}.")
