"""Hostile records: whatever one record holds, the per-record step validates it or rejects it as itself."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from airflow_provider_klar.models import RecordValidator
from airflow_provider_klar.upload._json import parse_json_line
from airflow_provider_klar.upload._record import SourceRecord
from airflow_provider_klar.upload.prepare import PreparedRecord, make_preparer

GOOD = {"id": "ORD-1", "createdAt": 1_700_000_000, "currencyCodeIso3Letter": "EUR"}


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"x": value}
    return value


def deep_list(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


class Exploding(Mapping[str, Any]):
    """A mapping whose methods raise, as a badly written record class might."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


HOSTILE: dict[str, Any] = {
    "unknown field 400 deep": {**GOOD, "foo": nested(400)},
    "unknown field 100,000 deep": {**GOOD, "foo": nested(100_000)},
    "unknown list 3,000 deep": {**GOOD, "foo": deep_list(3000)},
    "NaN": {**GOOD, "transactionCosts": math.nan},
    "Infinity in an unknown field": {**GOOD, "foo": -math.inf},
    "huge integer": {**GOOD, "createdAt": 10**5000},
    "huge integer in an unknown field": {**GOOD, "foo": 10**5000},
    "integer beyond 64 bits": {**GOOD, "transactionCosts": 2**70},
    "lone surrogate": {**GOOD, "orderName": "\ud800"},
    "lone surrogate in an unknown field": {**GOOD, "foo": "a\udfffb"},
    "non-string keys": {**GOOD, 1: "one", (2, 3): "tuple"},
    "a set in an unknown field": {**GOOD, "foo": {1, 2}},
    "a list": [GOOD],
    "a string": "ORD-1",
    "None": None,
    "an exploding mapping": Exploding(),
    "a 5 MB string": {**GOOD, "orderName": "x" * 5_000_000},
}


def check(prepared: PreparedRecord) -> None:
    """Sent as strict JSON, or rejected with a reason: nothing in between."""
    if prepared.encoded is not None:
        assert not prepared.errors
        json.loads(prepared.encoded, parse_constant=lambda token: pytest.fail(f"{token} sent"))
    else:
        assert prepared.errors
        assert all(str(error) for error in prepared.errors)


@pytest.mark.parametrize("validate", [True, False], ids=["validated", "unchecked"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_record_is_checked_or_rejected_never_raised(name: str, validate: bool) -> None:
    validator = RecordValidator("orders", "07.2025") if validate else None
    prepare = make_preparer(validator, "id")
    check(prepare(SourceRecord(0, "records", 0, HOSTILE[name])))
    # The next record is unaffected.
    assert prepare(SourceRecord(1, "records", 1, dict(GOOD))).encoded is not None


@pytest.mark.parametrize("levels", [400, 100_000])
def test_a_deep_unknown_field_is_rejected_naming_its_path(levels: int) -> None:
    prepare = make_preparer(RecordValidator("orders", "07.2025"), "id")
    record = {**GOOD, "lineItems": [{"id": "L", "foo": nested(levels)}]}
    prepared = prepare(SourceRecord(0, "records", 0, record))
    assert prepared.encoded is None
    assert prepared.id == "ORD-1"
    [error] = prepared.errors
    assert error.path == "lineItems.0.foo"
    assert "nested more than 200 levels deep (at lineItems.0.foo.x.x" in error.message
    assert "leave it out" in error.message


def test_an_unknown_field_just_within_the_limit_passes_with_a_warning() -> None:
    prepare = make_preparer(RecordValidator("orders", "07.2025"), "id")
    # The record is level 1, "foo" level 2: 199 more levels of objects reach exactly 200.
    prepared = prepare(SourceRecord(0, "records", 0, {**GOOD, "foo": nested(198)}))
    assert prepared.encoded is not None
    assert prepared.unknown_fields == ("foo",)


def test_unchecked_records_too_deep_for_the_encoder_are_rejected_with_the_reason() -> None:
    prepared = make_preparer(None, "id")(SourceRecord(0, "records", 0, {**GOOD, "foo": nested(100_000)}))
    assert prepared.encoded is None
    assert prepared.id == "ORD-1"
    assert "nested more than 200 levels deep (at foo.x.x" in prepared.errors[0].message


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"id":"A","foo":' + b"[" * 300 + b"]" * 300 + b"}", "nested more than 200 levels deep"),
        (b'{"id":"A","total":NaN}', "NaN is not a JSON number"),
        (b'{"id":"A","total":-Infinity}', "Infinity is not a JSON number"),
        (b'{"id":"A","total":' + b"9" * 5000 + b"}", "number out of range"),
        (b'{"id":"A","name":"\\ud800"}', "invalid JSON"),
        (b'{"id":"A","name":"\xff"}', "byte 0xFF at byte 19 of the line is not UTF-8"),
        (b"[1, 2]", "expected a JSON object, got an array"),
    ],
)
def test_a_hostile_json_line_is_rejected_as_that_line(line: bytes, reason: str) -> None:
    src = parse_json_line(line, 7, 6, "orders.jsonl")
    assert src.record is None
    assert src.error is not None
    assert src.error.startswith("line 7: ")
    assert reason in src.error
    prepared = make_preparer(RecordValidator("orders", "07.2025"), "id")(src)
    assert prepared.encoded is None
    assert prepared.errors


def test_duplicate_keys_count_as_the_last_one_as_in_javascript() -> None:
    src = parse_json_line(b'{"id":"A","id":"B","createdAt":1700000000}', 1, 0, "orders.jsonl")
    assert src.record == {"id": "B", "createdAt": 1_700_000_000}
