"""Unit tests of the sandbox's SQLite store and fault knobs (no HTTP)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from airflow_provider_klar.sandbox import faults as faults_module
from airflow_provider_klar.sandbox.faults import FaultInjector, parse_rate
from airflow_provider_klar.sandbox.store import Store, StoredRow, utc_timestamp


def test_upsert_overwrites_by_key_and_keeps_first_stored_order() -> None:
    store = Store()
    store.upsert(
        "orders", "07.2025", [StoredRow("A", "A", '{"id":"A","v":1}'), StoredRow("B", "B", '{"id":"B"}')]
    )
    store.upsert("orders", "07.2025", [StoredRow("A", "A", '{"id":"A","v":2}')])
    assert store.count("orders") == 2
    assert store.get("orders", "A") == {"id": "A", "v": 2}
    assert [r["id"] for r in store.records("orders")] == ["A", "B"]
    assert store.get("orders", "missing") is None
    assert store.count("refunds") == 0


def test_composite_keys_and_lookup_by_id() -> None:
    store = Store()
    rows = [
        StoredRow('["1","L1",null]', "1", '{"orderId":"1","lineItemId":"L1","productCogs":1}'),
        StoredRow('["1","L2",null]', "1", '{"orderId":"1","lineItemId":"L2","productCogs":2}'),
    ]
    store.upsert("cogs", "12.2022", rows)
    assert store.count("cogs") == 2
    assert [r["lineItemId"] for r in store.records("cogs", record_id="1")] == ["L1", "L2"]
    assert store.get("cogs", '["1","L1",null]')["productCogs"] == 1
    assert store.get("cogs", "1") is not None
    assert store.records("cogs", limit=1, offset=1)[0]["lineItemId"] == "L2"


def test_status_counters() -> None:
    store = Store()
    assert store.status("orders").to_api() == {
        "total": "0",
        "lastBatchCount": "0",
        "lastSuccess": None,
        "lastFailure": None,
    }
    store.record_success("orders", 3, at="2025-01-01T00:00:00.000Z")
    store.record_success("orders", 2, at="2025-01-01T00:00:01.000Z")
    store.record_failure("orders", at="2025-01-01T00:00:02.000Z")
    assert store.status("orders").to_api() == {
        "total": "5",
        "lastBatchCount": "2",
        "lastSuccess": "2025-01-01T00:00:01.000Z",
        "lastFailure": "2025-01-01T00:00:02.000Z",
    }
    store.reset()
    assert store.status("orders").total == 0


def test_timestamp_format() -> None:
    text = utc_timestamp()
    assert text.endswith("Z")
    assert len(text) == len("2025-01-01T00:00:00.000Z")


def test_file_database_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "klar.db")
    store = Store(path)
    store.upsert("orders", "07.2025", [StoredRow("A", "A", '{"id":"A"}')])
    store.record_success("orders", 1)
    store.close()
    again = Store(path)
    assert again.get("orders", "A") == {"id": "A"}
    assert again.status("orders").total == 1
    again.close()


def test_concurrent_upserts_from_threads() -> None:
    store = Store()

    def write(t: int) -> None:
        for b in range(20):
            store.upsert("orders", "07.2025", [StoredRow(f"{t}-{b}-{i}", None, "{}") for i in range(10)])

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count("orders") == 4 * 20 * 10


def test_fail_next_queue_is_consumed_in_order() -> None:
    injector = FaultInjector(fail_next=[429, "drop", 503], retry_after=2.5)
    first, second, third = injector.decide(), injector.decide(), injector.decide()
    assert first is not None
    assert (first.status, first.retry_after, first.reason) == (429, 3, "fail_next")
    assert second is not None
    assert second.drop
    assert third is not None
    assert (third.status, third.retry_after) == (503, None)
    assert injector.decide() is None


def test_fail_next_with_retry_after_and_drop_after() -> None:
    injector = FaultInjector(fail_next=[[503, 2.5], "drop_after"])
    assert injector.snapshot()["fail_next"] == [[503, 3], "drop_after"]
    first, second = injector.decide(), injector.decide()
    assert first is not None
    assert (first.status, first.retry_after, first.after) == (503, 3, False)
    assert second is not None
    assert (second.status, second.after) == (None, True)


def test_fail_rate_is_seeded_and_picks_from_codes() -> None:
    injector = FaultInjector(fail_rate=0.5, fail_codes=[502], seed=7)
    decisions = [injector.decide() for _ in range(200)]
    failed = [d for d in decisions if d is not None]
    assert 50 < len(failed) < 150
    assert {d.status for d in failed} == {502}
    again = FaultInjector(fail_rate=0.5, fail_codes=[502], seed=7)
    assert [d is None for d in decisions] == [again.decide() is None for _ in range(200)]


def test_rate_limit_token_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(faults_module.time, "monotonic", lambda: clock[0])
    injector = FaultInjector(rate_limit="2/s")
    assert injector.decide() is None
    assert injector.decide() is None
    limited = injector.decide()
    assert limited is not None
    assert (limited.status, limited.reason, limited.retry_after) == (429, "rate_limit", 1)
    clock[0] += 0.5  # one token back
    assert injector.decide() is None
    assert injector.decide() is not None


@pytest.mark.parametrize(
    ("text", "rate"), [("10/s", 10.0), ("600/m", 10.0), ("5", 5.0), (2, 2.0), ("0", None)]
)
def test_parse_rate(text: str | int, rate: float | None) -> None:
    assert parse_rate(text) == rate


def test_bad_knobs_are_refused() -> None:
    injector = FaultInjector()
    with pytest.raises(TypeError, match="latency"):
        injector.set(latncy_ms=5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        injector.set(fail_rate=2)
    with pytest.raises(ValueError, match="not an HTTP status"):
        injector.set(fail_next=[42])
    with pytest.raises(ValueError, match="N/s"):
        parse_rate("10/fortnight")


def test_reset_turns_everything_off() -> None:
    injector = FaultInjector(
        latency_ms=50,
        latency_jitter_ms=20,
        fail_rate=1,
        fail_next=[500],
        rate_limit=1,
        envelope="array",
        max_body_bytes=10,
        echo_auth=True,
    )
    injector.reset()
    snap = injector.snapshot()
    assert snap["latency_ms"] == snap["latency_jitter_ms"] == 0
    assert snap["fail_next"] == []
    assert snap["rate_limit"] is None
    assert snap["envelope"] == {"cogs": "items", "logistics-costs": "items", "transaction-costs": "items"}
    assert (snap["max_body_bytes"], snap["echo_auth"]) == (None, False)
    assert injector.decide() is None
    assert injector.delay() == 0


def test_jitter_draws_seeded_delays_within_the_range() -> None:
    injector = FaultInjector(latency_ms=10, latency_jitter_ms=40, seed=3)
    delays = [injector.delay() for _ in range(200)]
    assert all(0.010 <= d <= 0.050 for d in delays)
    assert len(set(delays)) > 150  # drawn, not constant
    again = FaultInjector(latency_ms=10, latency_jitter_ms=40, seed=3)
    assert [again.delay() for _ in range(200)] == delays
    assert FaultInjector(latency_ms=10).delay() == 0.010


def test_envelope_switch_per_resource_and_for_all() -> None:
    injector = FaultInjector(envelope={"cogs": "array"})
    assert [injector.envelope(r) for r in ("cogs", "logistics-costs", "orders")] == [
        "array",
        "items",
        "array",
    ]
    injector.set(envelope="array")
    assert injector.envelope("transaction-costs") == "array"
    injector.set(envelope=None)
    assert injector.envelope("cogs") == "items"
    with pytest.raises(ValueError, match="cannot be switched for 'refunds'"):
        injector.set(envelope={"refunds": "items"})
    with pytest.raises(ValueError, match="must be 'array', 'items' or a mapping"):
        injector.set(envelope=["array"])


@pytest.mark.parametrize(
    ("knobs", "needle"),
    [
        ({"max_body_bytes": -1}, "0 or more"),
        ({"latency_jitter_ms": -5}, "0 or more"),
        ({"echo_auth": "perhaps"}, "true or false"),
    ],
)
def test_bad_switches_are_refused(knobs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        FaultInjector(**knobs)
    assert FaultInjector(echo_auth="yes").echo_auth is True
    assert FaultInjector(max_body_bytes=0).max_body_bytes is None
