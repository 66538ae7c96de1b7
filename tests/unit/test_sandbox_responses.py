"""Unit tests of the sandbox's answer shapes and body parsing (no HTTP)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_klar.results import FieldError
from airflow_provider_klar.sandbox.contract import CONTRACT
from airflow_provider_klar.sandbox.engine import BadBody, parse_batch, record_key
from airflow_provider_klar.sandbox.responses import (
    RecordCheck,
    class_validator_errors,
    constraint_name,
    flat_errors,
    render_batch,
    string_errors,
    success,
)

ORDERS = CONTRACT["orders"]

GOOD = {"id": "ORD-1", "createdAt": 1700000000}
BAD_TAX = {"id": "ORD-2", "lineItems": [{"id": "L1", "taxes": [{"taxRate": "17%", "title": "VAT"}]}]}
BAD_ID = {"id": 1111}


def _checks() -> list[RecordCheck]:
    return [
        RecordCheck(0, GOOD),
        RecordCheck(1, BAD_TAX, (FieldError("lineItems.0.taxes.0.taxRate", "must be a number", "17%"),)),
        RecordCheck(2, BAD_ID, (FieldError("id", "must be a string", 1111),)),
    ]


def test_success_answers_are_the_ones_klar_documents() -> None:
    # klar-api.md, "Resources": the code and body of each route's success answer.
    documented = {
        ("orders", "validate"): (201, {"status": "VALID"}),
        ("orders", "upload"): (201, {"status": "VALID"}),
        ("refunds", "validate"): (200, {"status": "VALID"}),
        ("refunds", "upload"): (201, None),
        ("cogs", "validate"): (202, {"status": "VALID"}),
        ("cogs", "upload"): (201, None),
        ("logistics-costs", "validate"): (202, {"status": "VALID"}),
        ("logistics-costs", "upload"): (201, None),
        ("transaction-costs", "upload"): (201, {"status": "VALID"}),
    }
    answers = {
        (c.name, mode): (success(c, mode).status, success(c, mode).body)
        for c in CONTRACT.values()
        for mode in c.modes
    }
    assert answers == documented


def test_flat_errors_key_is_index_dot_path_and_keep_the_raw_id() -> None:
    errors = flat_errors([c for c in _checks() if not c.valid], "id")
    assert errors == [
        {
            "id": "ORD-2",
            "key": "1.lineItems.0.taxes.0.taxRate",
            "message": "taxRate must be a number",
            "value": "17%",
        },
        {"id": 1111, "key": "2.id", "message": "id must be a string", "value": 1111},
    ]


def test_string_errors_name_resource_index_path_value_and_constraint() -> None:
    lines = string_errors([c for c in _checks() if not c.valid], "orders")
    assert lines == [
        "orders.1.lineItems.0.taxes.0.taxRate: (17%) must be a number (isNumber)",
        "orders.2.id: (1111) must be a string (isString)",
    ]


def test_class_validator_nodes_nest_through_children_with_targets() -> None:
    tree = class_validator_errors(_checks())
    assert [node["property"] for node in tree] == ["1", "2"]
    line_items = tree[0]["children"][0]
    assert line_items["property"] == "lineItems"
    assert line_items["target"] is BAD_TAX
    item = line_items["children"][0]
    taxes = item["children"][0]
    leaf = taxes["children"][0]["children"][0]
    assert (item["property"], taxes["property"], leaf["property"]) == ("0", "taxes", "taxRate")
    assert leaf["value"] == "17%"
    assert leaf["target"] == {"taxRate": "17%", "title": "VAT"}
    assert leaf["children"] == []
    assert leaf["constraints"] == {"isNumber": "taxRate must be a number"}
    assert "constraints" not in taxes


def test_class_validator_leaves_value_out_for_a_missing_field_and_merges_paths() -> None:
    check = RecordCheck(
        0,
        {"id": "A"},
        (FieldError("createdAt", "field required"), FieldError("createdAt", "must be a number")),
    )
    (root,) = class_validator_errors([check])
    (leaf,) = root["children"]
    assert "value" not in leaf
    assert leaf["constraints"] == {
        "isDefined": "createdAt field required",
        "isNumber": "createdAt must be a number",
    }


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ("must be a string, got the number 5", "isString"),
        ("must be a number, got the string '2'", "isNumber"),
        ("must be a Unix timestamp in seconds", "isTimestamp"),
        ("Field required", "isDefined"),
        ("must be a boolean", "isBoolean"),
        ("something odd", "isValid"),
    ],
)
def test_constraint_names(message: str, name: str) -> None:
    assert constraint_name(message) == name


def _render(mode: str, checks: list[RecordCheck], *, failed: bool, new: bool, resource: str = "orders"):
    return render_batch(CONTRACT[resource], mode, checks, failed_order_ids=failed, new_errors=new)


def test_partial_upload_with_failed_order_ids_is_207_storing_only_valid_records() -> None:
    answer, stored = _render("upload", _checks(), failed=True, new=True)
    assert answer.status == 207
    assert answer.body["status"] == "PARTIALLY_VALID"
    assert answer.body["failedOrderIds"] == ["ORD-2", "1111"]
    assert answer.body["successfulOrderIds"] == ["ORD-1"]
    assert [e["key"] for e in answer.body["errors"]] == ["1.lineItems.0.taxes.0.taxRate", "2.id"]
    assert [c.index for c in stored] == [0]


def test_all_invalid_with_both_flags_is_400_flat_with_failed_ids() -> None:
    answer, stored = _render("upload", _checks()[1:], failed=True, new=True)
    assert (answer.status, stored) == (400, [])
    assert set(answer.body) == {"status", "errors", "failedOrderIds"}
    assert answer.body["failedOrderIds"] == ["ORD-2", "1111"]


def test_validate_never_partial() -> None:
    answer, stored = _render("validate", _checks(), failed=True, new=False)
    assert (answer.status, stored) == (400, [])
    assert answer.body["orderIds"] == ["ORD-2", "1111"]
    assert all(isinstance(e, str) for e in answer.body["errors"])


def test_new_errors_without_failed_ids_stores_nothing() -> None:
    answer, stored = _render("upload", _checks(), failed=False, new=True)
    assert (answer.status, stored) == (400, [])
    assert answer.body["status"] == "INVALID"
    assert len(answer.body["errors"]) == 2


def test_no_flag_is_class_validator_array() -> None:
    answer, stored = _render("upload", _checks(), failed=False, new=False)
    assert (answer.status, stored) == (400, [])
    assert isinstance(answer.body, list)


def test_failed_order_ids_means_nothing_to_refunds_and_transaction_costs_default_to_flat() -> None:
    refunds, _ = _render("upload", _checks(), failed=True, new=False, resource="refunds")
    assert refunds.status == 400
    assert isinstance(refunds.body, list)
    costs, _ = _render("upload", _checks(), failed=False, new=False, resource="transaction-costs")
    assert costs.status == 400
    assert costs.body["status"] == "INVALID"
    assert costs.body["errors"][0]["key"] == "1.lineItems.0.taxes.0.taxRate"


def test_all_valid_uses_success_answer_and_stores_in_upload_only() -> None:
    answer, stored = _render("upload", [RecordCheck(0, GOOD)], failed=True, new=True, resource="refunds")
    assert (answer.status, answer.body, len(stored)) == (201, None, 1)
    assert answer.content() == b""
    answer, stored = _render("validate", [RecordCheck(0, GOOD)], failed=True, new=True, resource="cogs")
    assert (answer.status, answer.body, stored) == (202, {"status": "VALID"}, [])


def test_parse_array_keeps_each_record_text_as_sent() -> None:
    body = b' [ {"id": "A",  "n": [1, 2]} ,{"id":"B"}]\n'
    items, raws = parse_batch(body, None, "orders")
    assert items == [{"id": "A", "n": [1, 2]}, {"id": "B"}]
    assert raws == ['{"id": "A",  "n": [1, 2]}', '{"id":"B"}']
    assert parse_batch(b"[]", None, "orders") == ([], [])


def test_parse_wrapped_body() -> None:
    items, raws = parse_batch(json.dumps({"items": [{"orderId": "1"}]}).encode(), "items", "cogs")
    assert (items, raws) == ([{"orderId": "1"}], None)


@pytest.mark.parametrize(
    ("body", "wrapper", "needle"),
    [
        (b'{"items": []}', None, "Expected a JSON array of orders objects"),
        (b"[]", "items", 'Expected a JSON object {"items": [...]}'),
        (b'{"orders": []}', "items", "with keys ['orders']"),
        (b"[1, 2", None, "not valid JSON"),
        (b"[1] x", None, "not valid JSON"),
        (b"\xff", None, "not UTF-8"),
    ],
)
def test_bad_bodies_name_the_expected_shape(body: bytes, wrapper: str | None, needle: str) -> None:
    with pytest.raises(BadBody, match=r"send|Expected") as info:
        parse_batch(body, wrapper, "orders")
    assert needle in str(info.value)


def test_record_keys() -> None:
    assert record_key(ORDERS, {"id": "ORD-1"}) == "ORD-1"
    cogs = CONTRACT["cogs"]
    assert record_key(cogs, {"orderId": "1", "lineItemId": "L"}) == '["1","L",null]'
    assert record_key(cogs, {"orderId": "1", "sku": "S"}) == '["1",null,"S"]'
