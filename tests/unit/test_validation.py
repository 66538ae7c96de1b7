"""RecordValidator, model_for and json_schema: the one entry point the operator and the sandbox use."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from airflow_provider_klar.models import (
    Cogs,
    Customer,
    LogisticsCosts,
    Order,
    RecordValidator,
    Refund,
    TransactionCosts,
    ValidatedRecord,
    json_schema,
    model_for,
)
from airflow_provider_klar.models.orders import Order_12_2022
from airflow_provider_klar.resources import RESOURCES
from airflow_provider_klar.results import FieldError

# --- model_for -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "version", "model"),
    [
        ("orders", "07.2025", Order),
        ("orders", "12.2022", Order_12_2022),
        ("refunds", "12.2022", Refund),
        ("cogs", "12.2022", Cogs),
        ("logistics-costs", "04.2024", LogisticsCosts),
        ("transaction-costs", "06.2024", TransactionCosts),
    ],
)
def test_model_for_known_versions(resource: str, version: str, model: type) -> None:
    assert model_for(resource, version) is model


def test_every_resource_and_version_of_the_resource_table_has_a_model() -> None:
    for row in RESOURCES.values():
        for version in row.versions:
            assert model_for(row.name, version)
        assert model_for(row.name, row.default_version)


@pytest.mark.parametrize(
    ("version", "model"),
    [("01.2026", Order), ("12.2030", Order), ("06.2025", Order_12_2022), ("03.2024", Order_12_2022)],
)
def test_unknown_versions_use_the_newest_known_shape_before_them(version: str, model: type) -> None:
    assert model_for("orders", version) is model


@pytest.mark.parametrize(
    ("resource", "version", "match"),
    [
        ("orders", "11.2022", "predates the versions this package knows"),
        ("logistics-costs", "12.2022", "predates"),
        ("orders", "2025-07", "not of the form MM.YYYY"),
        ("orders", "13.2025", "no month 13"),
        ("orders", "7.2025", "not of the form MM.YYYY"),
        ("invoices", "07.2025", "Unknown Klar resource 'invoices'"),
    ],
)
def test_model_for_errors(resource: str, version: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        model_for(resource, version)
    with pytest.raises(ValueError, match=match):
        RecordValidator(resource, version)


# --- json_schema -----------------------------------------------------------------------------------------


def test_json_schema_uses_camel_case_names_descriptions_and_constraints() -> None:
    schema = json_schema("orders", "07.2025")
    assert schema["required"] == ["id"]
    assert schema["additionalProperties"] is True
    props = schema["properties"]
    assert "lineItems" in props
    assert "line_items" not in props
    assert props["createdAt"]["description"].startswith("Unix timestamp in seconds")
    assert props["cancelledAt"]["exclusiveMinimum"] == 0
    assert props["currencyCodeIso3Letter"]["pattern"] == "^[A-Z]{3}$"
    tax = schema["$defs"]["Tax"]["properties"]["taxRate"]
    assert (tax["type"], tax["minimum"], tax["maximum"]) == ("number", 0, 1)
    assert "bundledProducts" in schema["$defs"]["LineItem"]["properties"]
    json.dumps(schema)  # JSON-ready


def test_json_schema_of_the_legacy_orders_has_no_bundles() -> None:
    schema = json_schema("orders", "12.2022")
    line_item = next(d for name, d in schema["$defs"].items() if name.startswith("LineItem"))
    assert "bundledProducts" not in line_item["properties"]


@pytest.mark.parametrize("row", list(RESOURCES.values()), ids=lambda r: r.name)
def test_json_schema_of_every_resource_describes_every_property(row: Any) -> None:
    schema = json_schema(row.name, row.default_version)
    assert row.id_field in schema["required"]
    for definition in [schema, *schema.get("$defs", {}).values()]:
        for name, prop in definition["properties"].items():
            assert prop.get("description"), name
            # Python's "not sent" default is not Klar's: no invented defaults or titles.
            assert "default" not in prop, name
            assert "title" not in prop, name


def test_json_schema_marks_only_klars_nullable_fields_as_nullable() -> None:
    schema = json_schema("orders", "07.2025")
    nullable = {
        f"{model}.{name}"
        for model, definition in [("Order", schema), *schema["$defs"].items()]
        for name, prop in definition["properties"].items()
        if {"type": "null"} in prop.get("anyOf", [])
    }
    assert nullable == {
        "Discount.descriptor",
        "Tax.descriptor",
        "Shipping.provinceOrState",
        "Shipping.providerDescriptor",
    }


# --- RecordValidator: valid records ----------------------------------------------------------------------

ORDERS = RecordValidator("orders", "07.2025")


def test_valid_record_is_sent_as_the_callers_own_dict() -> None:
    record = {"id": "1", "createdAt": 1697234232, "lineItems": [{"id": "a", "quantity": 1}]}
    result = ORDERS.validate(record)
    assert result == ValidatedRecord(record=record, id="1")
    assert result.record is record
    assert result.valid


def test_unknown_fields_are_kept_and_reported_as_dotted_paths() -> None:
    record = {
        "id": "1",
        "createdat": 1697234232,
        "lineItems": [{"id": "a", "foo": 1, "taxes": [{"taxRate": 0.1, "rateType": "std"}]}],
        "customer": {"phone": "+49"},
        "optionalIdentifiers": {"googleAnalyticsTransactionID": "G-1", "fbclid": "x"},
    }
    result = ORDERS.validate(record)
    assert result.record is record
    assert sorted(result.unknown_fields) == [
        "createdat",
        "customer.phone",
        "lineItems.0.foo",
        "lineItems.0.taxes.0.rateType",
        "optionalIdentifiers.fbclid",
    ]


def test_snake_case_input_is_sent_camel_case() -> None:
    record = {
        "id": "1",
        "created_at": 5,
        "line_items": [{"id": "a", "product_gmv": 2.5, "quantity": 1}],
        "x_y": 1,
    }
    result = ORDERS.validate(record)
    assert result.record == {
        "id": "1",
        "createdAt": 5,
        "lineItems": [{"id": "a", "productGmv": 2.5, "quantity": 1}],
        "x_y": 1,
    }
    assert result.unknown_fields == ("x_y",)


def test_snake_case_cost_record() -> None:
    result = RecordValidator("cogs", "12.2022").validate(
        {"order_id": "9", "line_item_id": "a", "product_cogs": 1}
    )
    assert result.record == {"orderId": "9", "lineItemId": "a", "productCogs": 1}
    assert result.id == "9"


def test_snake_case_input_with_errors_reports_camel_case_paths() -> None:
    result = ORDERS.validate({"id": "1", "line_items": [{"id": "a", "product_gmv": "2"}]})
    assert [e.path for e in result.errors] == ["lineItems.0.productGmv"]


def test_model_instances_are_dumped_by_alias() -> None:
    order = Order(id="1", customer=Customer(email="a@example.com"), closed_at=0)
    result = ORDERS.validate(order)
    assert result.record == {"id": "1", "customer": {"email": "a@example.com"}, "closedAt": 0}
    assert result.id == "1"


def test_model_instances_nested_in_a_dict_are_dumped() -> None:
    result = ORDERS.validate({"id": "1", "customer": Customer(email="a@example.com")})
    assert result.record == {"id": "1", "customer": {"email": "a@example.com"}}
    json.dumps(result.record)


def test_unknown_fields_with_non_json_values_are_made_json_ready() -> None:
    when = datetime(2024, 1, 2, tzinfo=timezone.utc)
    result = ORDERS.validate({"id": "1", "exportedAt": when})
    assert result.record == {"id": "1", "exportedAt": "2024-01-02T00:00:00Z"}
    assert result.unknown_fields == ("exportedAt",)


def test_any_mapping_is_accepted() -> None:
    result = ORDERS.validate(MappingProxyType({"id": "1"}))
    assert result.record == {"id": "1"}
    assert type(result.record) is dict


@pytest.mark.parametrize("record", [["id", "1"], "order", 5, None])
def test_non_objects_are_invalid_with_a_clear_message(record: Any) -> None:
    result = ORDERS.validate(record)
    assert not result.valid
    assert result.errors[0].path == ""
    assert result.errors[0].message.startswith("a record must be an object")


def test_the_validator_does_not_modify_the_record() -> None:
    record = {"id": "1", "line_items": [{"id": "a"}], "cancelledAt": 0}
    before = copy.deepcopy(record)
    ORDERS.validate(record)
    assert record == before


def test_a_tuple_or_set_where_a_list_belongs_is_named_as_what_it_is() -> None:
    # Only records= can hold them; "got a list of 1" would read as if the value were fine.
    tupled = ORDERS.validate({"id": "T-1", "lineItems": ({"id": "a"},)})
    assert [(e.path, e.message) for e in tupled.errors] == [("lineItems", "must be a list, got a tuple of 1")]
    tags = ORDERS.validate({"id": "T-2", "lineItems": [{"id": "a", "productTags": {"x"}}]})
    assert [(e.path, e.message) for e in tags.errors] == [
        ("lineItems.0.productTags", "must be a list, got {'x'} (a set)")
    ]


# --- RecordValidator: invalid records --------------------------------------------------------------------


def test_invalid_record_has_no_record_but_its_id_and_every_error() -> None:
    result = ORDERS.validate({"id": "1542", "lineItems": [{"id": "a", "taxes": [{"taxRate": 19}]}]})
    assert result.record is None
    assert not result.valid
    assert result.id == "1542"
    assert result.errors == (
        FieldError("lineItems.0.taxes.0.taxRate", "19 looks like a percentage, send 0.19", 19),
    )
    assert f"order {result.id}: {result.errors[0]}" == (
        "order 1542: lineItems.0.taxes.0.taxRate: 19 looks like a percentage, send 0.19"
    )


@pytest.mark.parametrize(("raw_id", "expected"), [(1111, "1111"), (None, None), (True, None), ("A-1", "A-1")])
def test_best_effort_id_of_invalid_records(raw_id: Any, expected: str | None) -> None:
    assert ORDERS.validate({"id": raw_id, "cancelledAt": 0}).id == expected


def test_legacy_orders_with_bundles_name_the_version_to_use() -> None:
    validator = RecordValidator("orders", "12.2022")
    result = validator.validate({"id": "1", "lineItems": [{"id": "a", "bundledProducts": [{"id": "b"}]}]})
    assert result.errors == (
        FieldError(
            "lineItems.0.bundledProducts",
            "bundledProducts needs API version 07.2025 or later; this record is validated for 12.2022",
            [{"id": "b"}],
        ),
    )
    assert validator.validate({"id": "1", "lineItems": [{"id": "a"}]}).valid


def test_an_unknown_newer_version_validates_with_the_current_shape() -> None:
    validator = RecordValidator("orders", "01.2026")
    assert validator.validate({"id": "1", "lineItems": [{"id": "a", "bundledProducts": []}]}).valid


def test_cost_resource_ids() -> None:
    result = RecordValidator("logistics-costs", "04.2024").validate(
        {"orderId": "7", "totalLogisticsCosts": 5}
    )
    assert result.valid
    assert result.id == "7"
    missing = RecordValidator("logistics-costs", "04.2024").validate({"orderId": "7"})
    assert [e.path for e in missing.errors] == ["totalLogisticsCosts"]


def test_cogs_key_error_path() -> None:
    result = RecordValidator("cogs", "12.2022").validate({"orderId": "7", "productCogs": 5})
    assert result.errors == (
        FieldError("lineItemId", "cogs need lineItemId or sku: send at least one of them"),
    )


# --- Klar's documented invalid examples ------------------------------------------------------------------

DOCUMENTED_INVALID = [
    ({"id": "1", "lineItems": [{"id": "a", "taxes": [{"taxRate": "17%"}]}]}, "lineItems.0.taxes.0.taxRate"),
    ({"id": "1", "createdAt": 1.6972342323232322e22}, "createdAt"),
    ({"id": "1", "shipping": {"taxes": [{"taxRate": -24}]}}, "shipping.taxes.0.taxRate"),
    ({"id": 1111}, "id"),
    ({"id": "1", "cancelledAt": 0}, "cancelledAt"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "path"), DOCUMENTED_INVALID)
def test_klars_documented_invalid_examples_are_rejected_with_the_field_in_the_path(
    record: dict[str, Any], path: str
) -> None:
    result = ORDERS.validate(record)
    assert [e.path for e in result.errors] == [path]
    assert result.errors[0].value == _get(record, path)


def test_documented_transaction_costs_example() -> None:
    result = RecordValidator("transaction-costs", "06.2024").validate(
        {"orderId": 1111, "transactionCosts": 1}
    )
    assert [(e.path, e.value) for e in result.errors] == [("orderId", 1111)]


def _get(record: Any, path: str) -> Any:
    for part in path.split("."):
        record = record[int(part)] if isinstance(record, list) else record[part]
    return record


# --- concurrency -----------------------------------------------------------------------------------------


def test_one_validator_is_safe_to_share_between_threads() -> None:
    strict = RecordValidator("orders", "07.2025", strict=True)
    records = [{"id": str(i), "lineItems": [{"id": "a", "quantity": i % 3}]} for i in range(300)]
    records += [{"id": i} for i in range(100)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(strict.validate, records))
    assert [r.valid for r in results] == [True] * 300 + [False] * 100
    assert all(r.record is rec for r, rec in zip(results[:300], records[:300], strict=True))


def test_repr_names_resource_version_and_strictness() -> None:
    assert (
        repr(RecordValidator("cogs", "12.2022", strict=True))
        == "RecordValidator('cogs', '12.2022', strict=True)"
    )


def test_validated_record_valid_property() -> None:
    assert ValidatedRecord(record={"id": "1"}, id="1").valid
    assert not ValidatedRecord(record=None, id="1").valid
    assert not ValidatedRecord(record={"id": "1"}, id="1", errors=(FieldError("id", "x"),)).valid


def test_mapping_results_are_plain_dicts() -> None:
    result = ORDERS.validate({"id": "1", "lineItems": [{"id": "a"}]})
    assert isinstance(result.record, Mapping)


# --- Python values from databases ------------------------------------------------------------------------


def test_decimals_from_database_drivers_are_sent_as_json_numbers() -> None:
    record = {
        "id": "1",
        "transactionCosts": Decimal("2.50"),
        "lineItems": [{"id": "a", "quantity": Decimal("2"), "taxes": [{"taxRate": Decimal("0.19")}]}],
    }
    result = ORDERS.validate(record)
    assert result.record == {
        "id": "1",
        "transactionCosts": 2.5,
        "lineItems": [{"id": "a", "quantity": 2.0, "taxes": [{"taxRate": 0.19}]}],
    }
    assert result.record is not record
    json.dumps(result.record)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("transactionCosts", Decimal("NaN"), "must be a finite number"),
        ("lineItems.0.quantity", Decimal("-2"), "(-2) must not be negative"),
        ("createdAt", Decimal("1697234232000"), "(1697234232000) looks like milliseconds"),
        ("lineItems.0.taxes.0.taxRate", Decimal("19"), "19 looks like a percentage, send 0.19"),
    ],
)
def test_invalid_decimals_read_like_numbers(field: str, value: Decimal, message: str) -> None:
    record: dict[str, Any] = {"id": "1", "lineItems": [{"id": "a", "taxes": [{}]}]}
    _put(record, field, value)
    (error,) = ORDERS.validate(record).errors
    assert error.path == field
    assert error.message.startswith(message)


def _put(record: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        record = record[int(part)] if isinstance(record, list) else record[part]
    record[last] = value


def test_datetimes_are_not_timestamps_but_the_hint_converts_them() -> None:
    aware = datetime(2023, 10, 13, 21, 57, 12, tzinfo=timezone.utc)
    (error,) = ORDERS.validate({"id": "1", "createdAt": aware}).errors
    assert (
        error.message
        == "must be a Unix timestamp in seconds (a number), got a datetime: convert it (send 1697234232)"
    )
    (error,) = ORDERS.validate({"id": "1", "createdAt": aware.replace(tzinfo=None)}).errors
    assert error.message.endswith("got a datetime: convert it with a time zone")


def test_unknown_fields_that_json_cannot_carry_make_the_record_invalid_with_their_path() -> None:
    blob = object()
    result = ORDERS.validate({"id": "1", "lineItems": [{"id": "a", "blob": blob}]})
    assert result.record is None
    assert result.id == "1"
    (error,) = result.errors
    assert (error.path, error.value) == ("lineItems.0.blob", blob)
    assert error.message.startswith("cannot be sent as JSON")


# --- refunds ---------------------------------------------------------------------------------------------

REFUNDS = RecordValidator("refunds", "12.2022")


def test_a_refund_with_no_line_items_cancels_it_and_is_valid() -> None:
    assert REFUNDS.validate({"id": "R1", "lineItems": []}).valid


@pytest.mark.parametrize(
    ("line", "path", "message"),
    [
        ({"lineItemId": "1", "refundedQuantity": "1"}, "lineItems.0.refundedQuantity", "must be a number"),
        (
            {"lineItemId": "1", "refundQuantity": 1},
            "lineItems.0.refundQuantity",
            "must be a string, got the number 1",
        ),
        ({"lineItemId": 1}, "lineItems.0.lineItemId", "must be a string"),
        ({"refundedQuantity": 1}, "lineItems.0.lineItemId", "is required"),
        (
            {"lineItemId": "1", "processedAt": 1704880000000},
            "lineItems.0.processedAt",
            "(1704880000000) looks like",
        ),
    ],
)
def test_refund_line_errors(line: dict[str, Any], path: str, message: str) -> None:
    (error,) = REFUNDS.validate({"id": "R1", "lineItems": [line]}).errors
    assert error.path == path
    assert error.message.startswith(message)


def test_refund_ids_and_unknown_fields() -> None:
    result = REFUNDS.validate({"id": "R1", "orderId": "1", "lineItems": [{"lineItemId": "a", "amount": 5}]})
    assert result.id == "R1"
    assert sorted(result.unknown_fields) == ["lineItems.0.amount", "orderId"]


def test_validate_json_agrees_with_validate_on_what_it_vouches_for() -> None:
    from airflow_provider_klar.sandbox.fake_data import fake_orders

    validator = RecordValidator("orders", "07.2025")
    for order in fake_orders(20, seed=11):
        data = json.dumps(order).encode()
        one_pass = validator.validate_json(data)
        assert one_pass is not None
        assert one_pass == validator.validate(order)
        assert validator.validate_json_fields(data) == (
            one_pass.record,
            one_pass.id,
            one_pass.errors,
            one_pass.warnings,
            one_pass.unknown_fields,
        )
    unknown = validator.validate_json(b'{"id": "A-1", "createdAt": 1700000000, "note": {"x": [1, null]}}')
    assert unknown is not None
    assert unknown.valid
    assert unknown.unknown_fields == ("note",)
    assert unknown.record == {"id": "A-1", "createdAt": 1700000000, "note": {"x": [1, None]}}


@pytest.mark.parametrize(
    "data",
    [
        b'{"id": 1}',  # invalid: validate() words the error
        b'{"id": "A-1", "created_at": 1700000000}',  # a snake_case name: sent renamed, not as read
        b'{"id": "A-1", "customer": {"isNewsletterSubscriberAtTimeOfCheckout": "true"}}',  # lax value
        b'{"id": "A-1", "note": 1e400}',  # a number JSON cannot carry
        b'{"id": "A-1", "note": NaN}',
        b"[1, 2]",
        b'{"id": "A-1"',
        b'\xef\xbb\xbf{"id": "A-1"}',
    ],
)
def test_validate_json_leaves_what_it_cannot_vouch_for_to_validate(data: bytes) -> None:
    assert RecordValidator("orders", "07.2025").validate_json(data) is None


def test_validate_json_reports_pitfalls_as_warnings_or_errors_when_strict() -> None:
    from airflow_provider_klar.sandbox.fake_data import fake_orders

    order = next(fake_orders(1, seed=3))
    order["lineItems"][0]["totalAmountAfterTaxesAndDiscounts"] += 50
    data = json.dumps(order).encode()
    lenient = RecordValidator("orders", "07.2025").validate_json(data)
    strict = RecordValidator("orders", "07.2025", strict=True).validate_json(data)
    assert lenient is not None
    assert strict is not None
    assert lenient.valid
    assert lenient.warnings
    assert not lenient.errors
    assert not strict.valid
    assert strict.record is None
    assert strict.errors == lenient.warnings
