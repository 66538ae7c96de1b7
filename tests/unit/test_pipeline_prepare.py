"""The per-record step: source record in, bytes to send (or why not) out; and where-labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow_provider_klar.models import Order, RecordValidator
from airflow_provider_klar.sandbox.fake_data import fake_orders
from airflow_provider_klar.upload.prepare import describe, prepare_record
from airflow_provider_klar.upload.sources import SourceRecord

VALIDATOR = RecordValidator("orders", "07.2025")


def src(
    record: Any, *, error: str | None = None, source: str = "records", line: int | None = 0
) -> SourceRecord:
    return SourceRecord(position=7, source=source, line=line, record=record, error=error)


def test_a_valid_record_is_sent_as_compact_json_of_the_same_dict() -> None:
    order = next(fake_orders(1))
    order["note"] = "Grüße"
    prepared = prepare_record(src(order), VALIDATOR, "id")
    assert prepared.errors == ()
    assert prepared.id == "ORD-0"
    assert prepared.encoded is not None
    assert json.loads(prepared.encoded) == order
    assert b" " not in prepared.encoded.replace(b"Gr\xc3\xbc\xc3\x9fe", b"")[:50]  # compact separators
    assert "Grüße".encode() in prepared.encoded  # not \u-escaped
    assert prepared.unknown_fields == ("note",)


def test_an_invalid_record_is_not_encoded_and_says_which_field() -> None:
    order = next(fake_orders(1))
    order["lineItems"][0]["taxes"][0]["taxRate"] = "19%"
    prepared = prepare_record(src(order), VALIDATOR, "id")
    assert prepared.encoded is None
    assert prepared.id == "ORD-0"
    assert [e.path for e in prepared.errors] == ["lineItems.0.taxes.0.taxRate"]


def test_a_malformed_line_is_rejected_with_the_readers_reason() -> None:
    reason = "line 17: invalid JSON: Expecting ',' delimiter at column 35"
    prepared = prepare_record(src(None, error=reason, source="/d/orders.jsonl", line=17), VALIDATOR, "id")
    assert prepared.encoded is None
    assert prepared.id is None
    assert prepared.errors[0].message == f"Malformed record: {reason}"


def test_the_id_of_a_malformed_line_is_read_when_it_can_be() -> None:
    cut = SourceRecord(3, "/d/o.jsonl", 4, None, "line 4: invalid JSON", raw='{"id": "ORD-3", "createdAt": ')
    assert prepare_record(cut, VALIDATOR, "id").id == "ORD-3"
    cost = SourceRecord(3, "/d/c.jsonl", 4, None, "line 4: invalid JSON", raw='{"orderId":"A-1","x":')
    assert prepare_record(cost, None, "orderId").id == "A-1"
    garbage = SourceRecord(3, "/d/o.jsonl", 4, None, "line 4: invalid JSON", raw="not json at all")
    assert prepare_record(garbage, VALIDATOR, "id").id is None


def test_without_validation_models_are_dumped_camel_case_and_bad_json_is_rejected() -> None:
    order = Order.model_validate(next(fake_orders(1)))
    prepared = prepare_record(src(order), None, "id")
    assert prepared.encoded is not None
    assert prepared.id == "ORD-0"
    assert '"lineItems":' in prepared.encoded.decode()
    assert "null" not in prepared.encoded.decode()

    nan = prepare_record(src({"id": "X", "transactionCosts": float("nan")}), None, "id")
    assert nan.encoded is None
    assert "Cannot be sent as JSON" in nan.errors[0].message
    assert nan.id == "X"
    not_object = prepare_record(src(["a"]), None, "id")
    assert not_object.encoded is None
    assert "JSON object" in not_object.errors[0].message


def test_cost_records_are_named_by_order_id() -> None:
    prepared = prepare_record(src({"orderId": "ORD-9", "transactionCosts": 1.5}), None, "orderId")
    assert prepared.id == "ORD-9"
    assert prepared.encoded == b'{"orderId":"ORD-9","transactionCosts":1.5}'


@dataclass(frozen=True)
class RawSource:
    position: int
    source: str
    line: int | None
    record: Any
    error: str | None = None
    raw: bytes | None = None


def test_original_json_lines_bytes_are_sent_unchanged_when_the_validator_returns_the_same_dict() -> None:
    order = next(fake_orders(1))
    raw = json.dumps(order, indent=None).encode() + b"\n"  # not compact: proves the bytes are reused
    prepared = prepare_record(RawSource(0, "/d/o.jsonl", 1, order, raw=raw), VALIDATOR, "id")  # type: ignore[arg-type]
    assert prepared.encoded == raw.strip()
    assert prepared.id == "ORD-0"


def test_bytes_with_snake_case_names_are_not_sent_but_re_encoded_in_camel_case() -> None:
    order = next(fake_orders(1))
    order["payment_gateway_name"] = order.pop("paymentGatewayName")
    raw = json.dumps(order).encode()
    prepared = prepare_record(RawSource(0, "/d/o.jsonl", 1, order, raw=raw), VALIDATOR, "id")  # type: ignore[arg-type]
    assert prepared.errors == ()
    assert prepared.encoded is not None
    assert prepared.encoded != raw
    sent = json.loads(prepared.encoded)
    assert "payment_gateway_name" not in sent
    assert sent["paymentGatewayName"] == order["payment_gateway_name"]


def test_labels_say_where_a_record_came_from() -> None:
    assert describe(src({}, line=3)) == "record 7"
    assert describe(src({}, source="/data/orders.jsonl", line=12)) == "line 12 of /data/orders.jsonl"
    assert describe(src({}, source="s3://b/orders.json.gz", line=4)) == "item 4 of s3://b/orders.json.gz"
    assert describe(src({}, source="/data/x.csv", line=None)) == "record 7 of /data/x.csv"
