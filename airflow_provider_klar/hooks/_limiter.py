"""Adaptive concurrency: fewer requests in flight while Klar limits the rate, more again when it stops.

Every HTTP attempt of a hook takes a slot of one :class:`ConcurrencyLimiter`. The limit follows AIMD
(additive increase, multiplicative decrease, as TCP does): a 429 or 503 answer halves it (at least 1),
and every ``increase_after`` good answers raise it by one, up to the configured maximum. Requests that
were already in flight when the limit was halved answer from the same congested moment, so only the
first 429/503 of each "generation" halves it: ten concurrent 429s mean one halving, not ten.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_klar.exceptions import KlarError
from airflow_provider_klar.hooks._retry import WarningLogger

#: Answers that mean "too many requests": the limit is halved.
SLOW_DOWN_STATUS = frozenset({429, 503})
#: Good answers after which the limit rises by one.
DEFAULT_INCREASE_AFTER = 10


class InfoWarningLogger(WarningLogger, Protocol):
    """Anything with ``info`` and ``warning`` methods taking %-style arguments."""

    def info(self, msg: Any, /, *args: Any) -> object: ...


@dataclass
class Slot:
    """One attempt's place in the limiter; :meth:`ConcurrencyLimiter.report` takes it back with the answer.

    :param generation: The limiter's generation when the attempt started.
    """

    generation: int


class ConcurrencyLimiter:
    """Bounds the requests in flight; the bound adapts to 429/503 answers (thread-safe).

    :param maximum: The most requests in flight, and the starting limit.
    :param log: Where changes of the limit are logged (down at warning, up at info level).
    :param increase_after: Good answers after which the limit rises by one.
    """

    def __init__(
        self, maximum: int, *, log: InfoWarningLogger, increase_after: int = DEFAULT_INCREASE_AFTER
    ) -> None:
        if maximum < 1:
            raise ValueError(f"max_concurrency must be at least 1; got {maximum}.")
        self.maximum = maximum
        self.limit = maximum
        self.increase_after = increase_after
        #: The lowest limit reached, for summaries and tests.
        self.lowest = maximum
        self._log = log
        self._cond = threading.Condition()
        self._in_flight = 0
        self._good = 0
        self._generation = 0
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Requests in flight now."""
        return self._in_flight

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the hook was closed)."""
        return self._closed

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        """Wait for a free slot and hold it while the block runs (one HTTP attempt).

        :raises KlarError: When the limiter was closed (the hook was closed, e.g. the task was killed).
        """
        with self._cond:
            while self._in_flight >= self.limit and not self._closed:
                self._cond.wait()
            if self._closed:
                raise KlarError("The Klar hook was closed while a request waited for its turn.")
            self._in_flight += 1
            held = Slot(self._generation)
        try:
            yield held
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify()

    def report(self, held: Slot, status: int | None) -> None:
        """Adapt the limit to one attempt's answer.

        :param held: The slot the attempt held.
        :param status: The HTTP status, or ``None`` when there was no answer (neither good nor bad:
            a dropped connection says nothing about the rate).
        """
        if status is None:
            return
        with self._cond:
            if status in SLOW_DOWN_STATUS:
                self._good = 0
                if held.generation != self._generation or self.limit == 1:
                    return  # this congestion was already answered by a halving
                before, self.limit = self.limit, max(1, self.limit // 2)
                self._generation += 1
                self.lowest = min(self.lowest, self.limit)
                self._log.warning(
                    "Klar answered HTTP %d: at most %d requests in flight from now on (was %d); the limit "
                    "rises again by one every %d good answers, up to %d.",
                    status,
                    self.limit,
                    before,
                    self.increase_after,
                    self.maximum,
                )
                return
            if status >= 500 or self.limit >= self.maximum:
                return
            self._good += 1
            if self._good >= self.increase_after:
                self._good = 0
                self.limit += 1
                self._cond.notify()
                self._log.info(
                    "Klar answered %d requests without limiting the rate: up to %d requests in flight "
                    "again (at most %d).",
                    self.increase_after,
                    self.limit,
                    self.maximum,
                )

    def close(self) -> None:
        """Wake every waiting request and refuse new ones."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
