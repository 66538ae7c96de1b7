"""Strict types and constraints, each with the message and hint a user sees (through RecordValidator)."""

from __future__ import annotations

import math
from typing import Any

import pydantic
import pytest

from airflow_provider_klar.models import (
    Discount,
    LineItem,
    Order,
    RecordValidator,
    RefundedLineItem,
    Shipping,
    Tax,
    TransactionCosts,
)
from airflow_provider_klar.models._base import CURRENCY_CODES

ORDERS = RecordValidator("orders", "07.2025")


def errors_of(record: dict[str, Any], validator: RecordValidator = ORDERS) -> dict[str, tuple[str, Any]]:
    result = validator.validate(record)
    assert result.record is None
    return {e.path: (e.message, e.value) for e in result.errors}


def only_error(record: dict[str, Any], validator: RecordValidator = ORDERS) -> tuple[str, str, Any]:
    result = validator.validate(record)
    assert result.record is None
    assert len(result.errors) == 1, result.errors
    error = result.errors[0]
    return error.path, error.message, error.value


# --- strings and ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1111, 11.5, True, None, ["1"], {"a": 1}])
def test_ids_must_be_strings(value: Any) -> None:
    path, message, got = only_error({"id": value})
    assert path == "id"
    assert message.startswith("must be a string")
    assert got == value


def test_numeric_id_hint_says_what_to_send() -> None:
    assert only_error({"id": 1111}) == ("id", 'must be a string, got the number 1111 (send "1111")', 1111)


def test_numeric_order_id_of_cost_records() -> None:
    validator = RecordValidator("transaction-costs", "06.2024")
    path, message, value = only_error({"orderId": 1111, "transactionCosts": 1.2}, validator)
    assert (path, value) == ("orderId", 1111)
    assert "must be a string" in message
    # The id is still reported, best effort, for the summary and the rejected file.
    assert validator.validate({"orderId": 1111, "transactionCosts": 1.2}).id == "1111"


@pytest.mark.parametrize(
    "record",
    [
        {"id": "1", "orderName": 5},
        {"id": "1", "lineItems": [{"id": 7}]},
        {"id": "1", "lineItems": [{"id": "a", "sku": 12345}]},
        {"id": "1", "customer": {"id": 42}},
        {"id": "1", "tags": ["a", 2]},
    ],
)
def test_no_number_to_string_coercion_anywhere(record: dict[str, Any]) -> None:
    (path,) = errors_of(record)
    assert path.split(".")[-1] in {"orderName", "id", "sku", "1"}


# --- numbers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["19.99", "1", True, False, None, [1], float("nan"), float("inf")])
def test_money_must_be_a_finite_json_number(value: Any) -> None:
    path, message, _ = only_error({"id": "1", "transactionCosts": value})
    assert path == "transactionCosts"
    if isinstance(value, float):
        assert "finite" in message
    else:
        assert message.startswith("must be a number")


def test_numeric_string_hint() -> None:
    _, message, value = only_error({"id": "1", "lineItems": [{"id": "a", "productGmv": "19.99"}]})
    assert message == "must be a number, got the string '19.99' (send 19.99 without quotes)"
    assert value == "19.99"


def test_bool_is_not_a_number() -> None:
    assert only_error({"id": "1", "lineItems": [{"id": "a", "quantity": True}]})[1] == (
        "must be a number, got true (a boolean)"
    )


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (LineItem, "quantity"),
        (LineItem, "productGmv"),
        (LineItem, "productCogs"),
        (LineItem, "productShippingWeightInGrams"),
        (Discount, "discountAmount"),
        (Tax, "taxAmount"),
        (RefundedLineItem, "refundedQuantity"),
    ],
)
def test_unit_amounts_and_quantities_must_not_be_negative(
    model: type[pydantic.BaseModel], field: str
) -> None:
    base = {"id": "x"} if model is LineItem else {"lineItemId": "x"} if model is RefundedLineItem else {}
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({**base, field: -1})
    assert model.model_validate({**base, field: 0}).model_dump(exclude_unset=True)[field] == 0


def test_negative_quantity_message() -> None:
    assert only_error({"id": "1", "lineItems": [{"id": "a", "quantity": -2}]}) == (
        "lineItems.0.quantity",
        "(-2) must not be negative",
        -2,
    )


@pytest.mark.parametrize("value", [-3.5, 0, 12.0])
def test_totals_and_cost_totals_may_be_negative_corrections(value: float) -> None:
    assert TransactionCosts.model_validate({"orderId": "1", "transactionCosts": value})
    assert Shipping.model_validate(
        {"totalLogisticsCosts": value, "shippingTotalAmountAfterTaxAndDiscounts": value}
    )


# --- tax rates -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0, 0.0, 0.07, 0.19, 0.255, 1, 1.0])
def test_tax_rate_fractions_are_accepted(rate: float) -> None:
    assert Tax.model_validate({"taxRate": rate}).tax_rate == rate


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        (19, "19 looks like a percentage, send 0.19"),
        (7.7, "7.7 looks like a percentage, send 0.077"),
        (1.01, "1.01 looks like a percentage, send 0.0101"),
        ("17%", "must be a number (a fraction such as 0.19), got the string '17%'"),
        (
            "0.19",
            "must be a number (a fraction such as 0.19), got the string '0.19' (send 0.19 without quotes)",
        ),
        (-24, "(-24) has to be 0 or positive"),
    ],
)
def test_tax_rate_hints(rate: Any, message: str) -> None:
    assert only_error({"id": "1542", "lineItems": [{"id": "a", "taxes": [{"taxRate": rate}]}]}) == (
        "lineItems.0.taxes.0.taxRate",
        message,
        rate,
    )


def test_negative_shipping_tax_rate_names_the_shipping_path() -> None:
    path, message, value = only_error({"id": "1", "shipping": {"taxes": [{"taxRate": -24}]}})
    assert (path, value) == ("shipping.taxes.0.taxRate", -24)
    assert "0 or positive" in message


# --- timestamps ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["createdAt", "updatedAt", "processedAt", "closedAt"])
@pytest.mark.parametrize("value", [0, 1, 1697234232, 1697234232.5, 9_999_999_999])
def test_timestamps_in_seconds_are_accepted_and_zero_too(field: str, value: float) -> None:
    record = {"id": "1", field: value}
    assert ORDERS.validate(record).record == record


NOT_SECONDS = "is not a Unix timestamp in seconds (expected 0 to 9999999999)"
SECONDS = "must be a Unix timestamp in seconds (a number)"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1697234232323, "(1697234232323) looks like milliseconds: send Unix seconds (1697234232)"),
        (1697234232323.0, "(1697234232323.0) looks like milliseconds: send Unix seconds (1697234232)"),
        (1697234232323456, "(1697234232323456) looks like microseconds: send Unix seconds (1697234232)"),
        (1.6972342323232322e22, f"(1.6972342323232322e+22) {NOT_SECONDS}"),
        (10_000_000_000, f"(10000000000) {NOT_SECONDS}"),
        (-1, "(-1) must not be negative: send a Unix timestamp in seconds"),
        ("1697234232", f"{SECONDS}, got the string '1697234232' (send 1697234232 without quotes)"),
        ("2023-10-13T21:57:12Z", f"{SECONDS}, got the string '2023-10-13T21:57:12Z'"),
        (float("inf"), "must be a finite number, got inf"),
    ],
)  # fmt: skip
def test_timestamp_hints(value: Any, message: str) -> None:
    assert only_error({"id": "1", "createdAt": value}) == ("createdAt", message, value)


def test_timestamps_of_refunded_line_items_are_checked_with_their_path() -> None:
    path, message, _ = only_error(
        {"id": "1", "refundedLineItems": [{"lineItemId": "a", "createdAt": 1697234232000}]}
    )
    assert path == "refundedLineItems.0.createdAt"
    assert "milliseconds" in message


def test_cancelled_at_zero_is_rejected_with_the_hint_to_leave_it_out() -> None:
    path, message, value = only_error({"id": "1", "cancelledAt": 0})
    assert (path, value) == ("cancelledAt", 0)
    assert "leave the field out" in message


def test_cancelled_at_when_cancelled_is_fine_and_closed_at_zero_is_fine() -> None:
    record = {"id": "1", "financialStatus": "cancelled", "cancelledAt": 1697234232, "closedAt": 0}
    assert ORDERS.validate(record).valid


def test_cancelled_at_in_milliseconds_gets_the_millisecond_hint() -> None:
    assert "milliseconds" in only_error({"id": "1", "cancelledAt": 1697234232000})[1]


# --- currencies and countries ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["EUR", "USD", "CHF", "GBP", "SEK", "JPY", "HRK"])
def test_iso_4217_currencies_are_accepted(code: str) -> None:
    assert Order.model_validate({"id": "1", "currencyCodeIso3Letter": code})
    assert Shipping.model_validate({"currencyCodeIso3Letter": code})


@pytest.mark.parametrize("code", ["eur", "EURO", "€", "ABC", "", 978])
def test_other_currencies_are_rejected(code: Any) -> None:
    path, message, value = only_error({"id": "1", "currencyCodeIso3Letter": code})
    assert (path, value) == ("currencyCodeIso3Letter", code)
    assert "ISO 4217" in message


def test_currency_list_matches_babel_where_available() -> None:
    babel_numbers = pytest.importorskip("babel.numbers")
    babel_codes = set(babel_numbers.list_currencies())
    common = {
        "EUR",
        "USD",
        "GBP",
        "CHF",
        "PLN",
        "SEK",
        "DKK",
        "NOK",
        "CZK",
        "HUF",
        "JPY",
        "CNY",
        "AUD",
        "CAD",
    }
    assert common <= CURRENCY_CODES
    # Every code we accept is (or was) a real currency that Babel knows.
    assert CURRENCY_CODES - babel_codes <= {"XCG", "ZWG", "VED", "SLE", "UYW"}, CURRENCY_CODES - babel_codes


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("countryCodeIso2Letter", "DE", ["DEU", "de", "D", 49]),
        ("countryCodeIso3Letter", "DEU", ["DE", "deu", "DEUT"]),
    ],
)
def test_country_codes(field: str, good: str, bad: list[Any]) -> None:
    assert ORDERS.validate({"id": "1", "shipping": {field: good}}).valid
    for value in bad:
        path, message, got = only_error({"id": "1", "shipping": {field: value}})
        assert (path, got) == (f"shipping.{field}", value)
        assert "country code" in message


# --- other types -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", 1, 0, "yes", None])
def test_booleans_must_be_booleans(value: Any) -> None:
    path, message, _ = only_error({"id": "1", "customer": {"isNewsletterSubscriberAtTimeOfCheckout": value}})
    assert path == "customer.isNewsletterSubscriberAtTimeOfCheckout"
    assert message.startswith("must be true or false")


@pytest.mark.parametrize(
    ("record", "path", "start"),
    [
        ({"id": "1", "lineItems": {"id": "a"}}, "lineItems", "must be a list"),
        ({"id": "1", "lineItems": ({"id": "a"},)}, "lineItems", "must be a list"),
        ({"id": "1", "tags": "web"}, "tags", "must be a list"),
        ({"id": "1", "shipping": []}, "shipping", "must be an object"),
        ({"id": "1", "lineItems": ["a"]}, "lineItems.0", "must be an object"),
        ({"createdAt": 1}, "id", "is required"),
        ({"id": "1", "lineItems": [{"quantity": 1}]}, "lineItems.0.id", "is required"),
    ],
)
def test_structure_errors(record: dict[str, Any], path: str, start: str) -> None:
    got_path, message, _ = only_error(record)
    assert got_path == path
    assert message.startswith(start)


def test_every_error_of_a_record_is_reported_at_once() -> None:
    found = errors_of(
        {
            "id": 1111,
            "createdAt": 1.6972342323232322e22,
            "cancelledAt": 0,
            "lineItems": [{"id": "a", "taxes": [{"taxRate": "17%"}]}],
            "shipping": {"taxes": [{"taxRate": -24}]},
        }
    )
    assert set(found) == {
        "id",
        "createdAt",
        "cancelledAt",
        "lineItems.0.taxes.0.taxRate",
        "shipping.taxes.0.taxRate",
    }


def test_float_edge_values_are_finite_checked() -> None:
    assert not ORDERS.validate({"id": "1", "transactionCosts": math.nan}).valid
    assert ORDERS.validate({"id": "1", "transactionCosts": 1e300}).valid
