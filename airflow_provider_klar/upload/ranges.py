"""A compact set of record positions: sorted, merged, inclusive ranges.

Checkpoints store which source positions an upload has finished with. Batches complete out of order
when several are in flight, but each covers a contiguous run of positions, so the set stays a handful
of ranges whatever the upload size.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence


class PositionRanges:
    """Inclusive ``[start, end]`` ranges of non-negative positions, kept sorted and merged.

    :param ranges: Initial ranges, e.g. from a checkpoint (``[[0, 999], [2000, 2999]]``).
    :raises ValueError: When a range is malformed.
    """

    def __init__(self, ranges: Iterable[Sequence[int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for pair in ranges:
            if len(pair) != 2:
                raise ValueError(f"A position range is a pair [start, end], got {pair!r}.")
            self.add(int(pair[0]), int(pair[1]))

    def add(self, start: int, end: int) -> None:
        """Add the positions ``start`` to ``end`` (both included), merging with touching ranges.

        :param start: First position.
        :param end: Last position; ranges with ``end < start`` are empty and ignored.
        :raises ValueError: For a negative position.
        """
        if end < start:
            return
        if start < 0:
            raise ValueError(f"Positions are not negative, got {start}.")
        # The first range that could touch [start, end]: the last one starting at or before start.
        i = bisect_right(self._starts, start) - 1
        if i < 0 or self._ends[i] < start - 1:
            i += 1
        j = i
        while j < len(self._starts) and self._starts[j] <= end + 1:
            start = min(start, self._starts[j])
            end = max(end, self._ends[j])
            j += 1
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def __contains__(self, position: object) -> bool:
        if not isinstance(position, int):
            return False
        i = bisect_right(self._starts, position) - 1
        return i >= 0 and position <= self._ends[i]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        """The number of ranges (not of positions)."""
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PositionRanges) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"PositionRanges({self.to_list()!r})"

    @property
    def count(self) -> int:
        """The number of positions covered."""
        return sum(end - start + 1 for start, end in self)

    def to_list(self) -> list[list[int]]:
        """The ranges as JSON-ready ``[[start, end], ...]``."""
        return [[start, end] for start, end in self]
