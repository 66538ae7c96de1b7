"""The hook learns Klar's wire over real loopback HTTP: either envelope for the cost resources, and 413.

The stand-in (``_wire_klar.py``) wants a bare array or ``{"items": [...]}`` for the cost resources and
refuses the other with a whole-body 400 that names no record; it answers 413 above a body size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_provider_klar.exceptions import KlarConfigurationError, KlarRequestError
from airflow_provider_klar.hooks.klar import KlarHook
from airflow_provider_klar.results import OutcomeState
from tests.e2e._wire_klar import TOKEN, WireKlar, running

pytestmark = pytest.mark.e2e


def costs(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"orderId": f"O-{i}", "sku": f"SKU-{i}", "productCogs": 1.5} for i in range(start, start + n)]


class Lines:
    """The lines the hook logged: through the stdlib on Airflow 2 (caught by caplog, and maybe printed
    too), through structlog on Airflow 3 (printed only). Each line is counted once."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
        self._caplog, self._capsys = caplog, capsys
        self._logged: list[str] = []
        self._printed: list[str] = []

    def all(self) -> list[str]:
        captured = self._capsys.readouterr()
        self._logged += [r.getMessage() for r in self._caplog.records]
        self._printed += (captured.out + captured.err).splitlines()
        self._caplog.clear()
        return self._logged + self._printed

    def matching(self, text: str) -> list[str]:
        self.all()
        logged = [line for line in self._logged if text in line]
        return logged or [line for line in self._printed if text in line]


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[Lines]:
    caplog.set_level(logging.INFO)
    found = Lines(caplog, capsys)
    yield found
    assert all(TOKEN not in line for line in found.all())


def serve(monkeypatch: pytest.MonkeyPatch, server: WireKlar, extra: dict[str, Any] | None = None) -> WireKlar:
    conn = json.loads(server.connection())
    if extra is not None:
        conn["extra"] = extra
    monkeypatch.setenv("AIRFLOW_CONN_KLAR_DEFAULT", json.dumps(conn))
    return server


# -- envelopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["cogs", "logistics-costs", "transaction-costs"])
def test_a_klar_that_wants_the_array_gets_it_after_one_refusal(
    resource: str, monkeypatch: pytest.MonkeyPatch, lines: Lines
) -> None:
    with running(serve(monkeypatch, WireKlar(envelope="array"))) as klar, KlarHook() as hook:
        results = [hook.upload(resource, costs(50, start=50 * b)) for b in range(3)]
    assert all(r.accepted_count == 50 for r in results)
    assert len(klar.stored) == 150
    # The first batch: refused as {"items": [...]}, then stored as an array; the others: array at once.
    assert [(s.envelope, s.status) for s in klar.posts()] == [
        ("items", 400),
        ("array", 201),
        ("array", 201),
        ("array", 201),
    ]
    warned = lines.matching("accepted a bare JSON array")
    assert len(warned) == 1
    assert f'"envelope": {{"{resource}": "array"}}' in warned[0]


def test_a_klar_that_wants_items_gets_them_at_once(monkeypatch: pytest.MonkeyPatch, lines: Lines) -> None:
    with running(serve(monkeypatch, WireKlar(envelope="items"))) as klar, KlarHook() as hook:
        for b in range(2):
            assert hook.upload("cogs", costs(10, start=10 * b)).accepted_count == 10
        assert hook.validate("cogs", costs(5)).accepted_count == 5
    assert [s.envelope for s in klar.posts()] == ["items"] * 3
    assert lines.matching("accepted") == []


def test_a_pinned_envelope_is_sent_and_never_switched(monkeypatch: pytest.MonkeyPatch, lines: Lines) -> None:
    pinned = {"envelope": {"cogs": "array"}}
    with running(serve(monkeypatch, WireKlar(envelope="array"), pinned)) as klar, KlarHook() as hook:
        assert hook.upload("cogs", costs(10)).accepted_count == 10
    assert [s.envelope for s in klar.posts()] == ["array"]

    with (
        running(serve(monkeypatch, WireKlar(envelope="array"), {"envelope": "items"})) as klar,
        KlarHook() as hook,
        pytest.raises(KlarRequestError, match="body must be an array"),
    ):
        hook.upload("transaction-costs", costs(10))
    assert [s.envelope for s in klar.posts()] == ["items"]  # pinned: no second try
    assert lines.matching("accepted") == []


def test_a_record_level_refusal_confirms_the_envelope(monkeypatch: pytest.MonkeyPatch, lines: Lines) -> None:
    bad = [{**costs(1)[0], "orderId": 7}, *costs(2, start=1)]
    with running(serve(monkeypatch, WireKlar(envelope="items"))) as klar, KlarHook() as hook:
        result = hook.upload("cogs", bad)
        assert [o.state for o in result.outcomes] == [
            OutcomeState.REJECTED,
            OutcomeState.NOT_STORED,
            OutcomeState.NOT_STORED,
        ]
        assert result.outcomes[0].errors[0].message == "orderId must be a string"
    assert [s.envelope for s in klar.posts()] == ["items"]


def test_when_both_envelopes_are_refused_the_error_says_so(
    monkeypatch: pytest.MonkeyPatch, lines: Lines
) -> None:
    with (
        running(serve(monkeypatch, WireKlar(envelope="neither"))) as klar,
        KlarHook() as hook,
        pytest.raises(KlarRequestError) as raised,
    ):
        hook.upload("logistics-costs", costs(3))
    message = str(raised.value)
    assert 'both as an object {"items": [...]} (HTTP 400' in message
    assert "and as a bare JSON array (HTTP 400" in message
    assert "nothing was stored" in message
    assert [s.envelope for s in klar.posts()] == ["items", "array"]


def test_threads_that_meet_the_refusal_together_warn_once(
    monkeypatch: pytest.MonkeyPatch, lines: Lines
) -> None:
    with (
        running(serve(monkeypatch, WireKlar(envelope="array"))) as klar,
        KlarHook() as hook,
        ThreadPoolExecutor(max_workers=6) as pool,
    ):
        results = list(pool.map(lambda b: hook.upload("cogs", costs(20, start=20 * b)), range(12)))
    assert sum(r.accepted_count for r in results) == 240
    assert len(klar.stored) == 240
    assert len(lines.matching("accepted a bare JSON array")) == 1
    assert sum(1 for s in klar.posts() if s.status == 400) <= 6  # at most the first wave was refused


def test_a_bad_envelope_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        running(serve(monkeypatch, WireKlar(), {"envelope": {"cogs": "list"}})),
        KlarHook() as hook,
        pytest.raises(KlarConfigurationError, match=r"extra.envelope.cogs"),
    ):
        hook.upload("cogs", costs(1))


# -- 413 ----------------------------------------------------------------------------------------------


def orders(n: int, start: int = 0, pad: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"ORD-{i}", "createdAt": 1_700_000_000, "note": "x" * pad} for i in range(start, start + n)
    ]


def test_a_413_splits_the_batch_in_halves_and_lowers_the_cap(
    monkeypatch: pytest.MonkeyPatch, lines: Lines
) -> None:
    batch = orders(400)
    size = len(json.dumps(batch, separators=(",", ":")))
    # Klar takes about a third of the batch's bytes: halves fail too, quarters pass.
    with running(serve(monkeypatch, WireKlar(max_body=size // 3))) as klar, KlarHook() as hook:
        first = hook.upload("orders", batch)
        refused_first = sum(1 for s in klar.posts() if s.status == 413)
        second = hook.upload("orders", orders(400, start=400))
    assert [o.index for o in first.outcomes] == list(range(400))
    assert [o.id for o in first.outcomes] == [f"ORD-{i}" for i in range(400)]
    assert (first.accepted_count, second.accepted_count) == (400, 400)
    assert first.status_code == 201
    assert len(klar.stored) == 800
    assert refused_first == 3  # the whole batch, then both halves
    # The second batch is cut under the learned cap before sending: no 413 at all.
    assert sum(1 for s in klar.posts() if s.status == 413) == refused_first
    assert all(s.size <= size // 3 for s in klar.posts() if s.status == 201)
    # The halves and quarters went in order.
    stored_order = [i for s in klar.posts() if s.status == 201 for i in s.ids]
    assert stored_order == [f"ORD-{i}" for i in range(800)]
    assert len(lines.matching("as too large (HTTP 413)")) == 2  # lowered twice, said each time


def test_a_record_too_large_alone_is_rejected_as_that_record(
    monkeypatch: pytest.MonkeyPatch, lines: Lines
) -> None:
    batch = [*orders(3), *orders(1, start=3, pad=5000), *orders(4, start=4)]
    with running(serve(monkeypatch, WireKlar(max_body=2000))) as klar, KlarHook() as hook:
        result = hook.upload("orders", batch)
    states = [o.state for o in result.outcomes]
    assert states == [OutcomeState.ACCEPTED] * 3 + [OutcomeState.REJECTED] + [OutcomeState.ACCEPTED] * 4
    assert result.status_code == 413
    reason = result.outcomes[3].errors[0].message
    assert reason.startswith("Klar refused this record alone as too large (HTTP 413, a 5,")
    assert "make the record smaller" in reason
    assert result.outcomes[3].id == "ORD-3"
    assert sorted(klar.stored) == sorted(f"ORD-{i}" for i in range(8) if i != 3)
