"""The adaptive concurrency limit: halved by 429/503 once per congestion, raised by good answers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from airflow_provider_klar.exceptions import KlarError
from airflow_provider_klar.hooks._limiter import ConcurrencyLimiter


class Lines:
    """A logger that keeps its %-formatted lines."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.infos: list[str] = []

    def warning(self, msg: Any, /, *args: Any) -> None:
        self.warnings.append(msg % args)

    def info(self, msg: Any, /, *args: Any) -> None:
        self.infos.append(msg % args)


def answer(limiter: ConcurrencyLimiter, status: int | None) -> None:
    with limiter.slot() as slot:
        pass
    limiter.report(slot, status)


def test_a_429_halves_the_limit_and_says_so() -> None:
    log = Lines()
    limiter = ConcurrencyLimiter(8, log=log, increase_after=3)
    answer(limiter, 429)
    assert limiter.limit == 4
    assert log.warnings == [
        "Klar answered HTTP 429: at most 4 requests in flight from now on (was 8); the limit rises again "
        "by one every 3 good answers, up to 8."
    ]


def test_answers_of_one_congested_moment_halve_once() -> None:
    limiter = ConcurrencyLimiter(8, log=Lines())
    slots = []
    for _ in range(4):  # four requests in flight together
        cm = limiter.slot()
        slots.append((cm, cm.__enter__()))
    for cm, slot in slots:
        cm.__exit__(None, None, None)
        limiter.report(slot, 503)
    assert limiter.limit == 4
    answer(limiter, 503)  # a request started after the halving: a new signal
    assert limiter.limit == 2


def test_the_limit_never_drops_below_one_and_climbs_back_to_the_maximum() -> None:
    log = Lines()
    limiter = ConcurrencyLimiter(4, log=log, increase_after=2)
    for _ in range(5):
        answer(limiter, 429)
    assert (limiter.limit, limiter.lowest) == (1, 1)
    assert len(log.warnings) == 2  # 4 -> 2 -> 1, then nothing more to say
    for _ in range(20):
        answer(limiter, 201)
    assert limiter.limit == 4
    assert (
        log.infos[-1]
        == "Klar answered 2 requests without limiting the rate: up to 4 requests in flight again (at most 4)."
    )
    assert len(log.infos) == 3


def test_errors_and_dropped_connections_neither_lower_nor_raise_it() -> None:
    limiter = ConcurrencyLimiter(4, log=Lines(), increase_after=1)
    answer(limiter, 429)
    for status in (None, 500, 502, None):
        answer(limiter, status)
    assert limiter.limit == 2


def test_slots_wait_for_the_limit_and_close_wakes_them() -> None:
    limiter = ConcurrencyLimiter(1, log=Lines())
    held = limiter.slot()
    held.__enter__()
    entered = threading.Event()
    failed: list[BaseException] = []

    def second() -> None:
        try:
            with limiter.slot():
                entered.set()
        except KlarError as err:
            failed.append(err)

    thread = threading.Thread(target=second)
    thread.start()
    assert not entered.wait(0.2)  # the only slot is taken
    limiter.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert not entered.is_set()
    assert "closed" in str(failed[0])
    held.__exit__(None, None, None)


def test_a_freed_slot_lets_the_next_request_in() -> None:
    limiter = ConcurrencyLimiter(1, log=Lines())
    held = limiter.slot()
    held.__enter__()
    entered, release = threading.Event(), threading.Event()

    def second() -> None:
        with limiter.slot():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=second)
    thread.start()
    held.__exit__(None, None, None)
    assert entered.wait(5)
    assert limiter.in_flight == 1
    release.set()
    thread.join(timeout=5)
    assert limiter.in_flight == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        ConcurrencyLimiter(0, log=Lines())
