"""Pitfall checks: totals not matching unit values, totals sent as unit values, foreign refunds, bundles."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from airflow_provider_klar.models import RecordValidator
from airflow_provider_klar.models.pitfalls import check_order
from airflow_provider_klar.results import FieldError

LENIENT = RecordValidator("orders", "07.2025")
STRICT = RecordValidator("orders", "07.2025", strict=True)


def line(**overrides: Any) -> dict[str, Any]:
    """A consistent line: 3 x 10.00 gross, 1.00 discount and 1.44 tax per unit: 30.00 -> 22.68."""
    item: dict[str, Any] = {
        "id": "L1",
        "productGmv": 10.0,
        "quantity": 3,
        "productCogs": 4.0,
        "discounts": [{"title": "10%", "discountAmount": 1.0}],
        "taxes": [{"title": "VAT", "taxRate": 0.19, "taxAmount": 1.44}],
        "totalAmountBeforeTaxesAndDiscounts": 30.0,
        "totalAmountAfterTaxesAndDiscounts": 22.68,
    }
    item.update(overrides)
    return item


def order(*items: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "1542", "lineItems": list(items), "refundedLineItems": [], **fields}


def warnings_of(record: dict[str, Any]) -> list[FieldError]:
    result = LENIENT.validate(record)
    assert result.valid, result.errors
    return list(result.warnings)


def test_a_consistent_order_has_no_warnings() -> None:
    assert warnings_of(order(line())) == []


def test_rounding_within_a_cent_per_unit_is_tolerated() -> None:
    # 3 x 3.33 = 9.99, sent as 10.00; per-unit values rounded to cents.
    item = line(productGmv=3.33, discounts=[], taxes=[], totalAmountAfterTaxesAndDiscounts=10.0)
    item["totalAmountBeforeTaxesAndDiscounts"] = 10.0
    assert warnings_of(order(item)) == []


def test_gross_total_not_matching_gmv_times_quantity() -> None:
    (warning,) = warnings_of(
        order(line(totalAmountBeforeTaxesAndDiscounts=35.0, totalAmountAfterTaxesAndDiscounts=27.68))
    )
    assert warning.path == "lineItems.0.totalAmountBeforeTaxesAndDiscounts"
    assert warning.value == 35.0
    assert warning.message == (
        "order 1542: line total before taxes and discounts is 35.00, "
        "but productGmv 10.00 x quantity 3 = 30.00"
    )


def test_net_total_not_matching_the_unit_values() -> None:
    (warning,) = warnings_of(order(line(totalAmountAfterTaxesAndDiscounts=25.0)))
    assert warning.path == "lineItems.0.totalAmountAfterTaxesAndDiscounts"
    assert warning.message == (
        "order 1542: line total after taxes and discounts is 25.00, but gross 30.00 - quantity 3 x "
        "(discounts 1.00 + taxes 1.44) = 22.68"
    )


def test_net_total_that_matches_only_with_line_total_discounts_and_taxes_says_so() -> None:
    # Discount 3.00 and tax 4.32 sent as line totals: 30 - 3 - 4.32 = 22.68 is the net sent.
    item = line(discounts=[{"discountAmount": 3.0}], taxes=[{"taxRate": 0.19, "taxAmount": 4.32}])
    (warning,) = warnings_of(order(item))
    assert warning.path == "lineItems.0.totalAmountAfterTaxesAndDiscounts"
    assert "= 8.04" in warning.message
    assert warning.message.endswith(
        "it matches only if discounts and taxes are line totals: send them per single unit"
    )


def test_discounts_that_exceed_the_gross_look_like_line_totals() -> None:
    item = line(discounts=[{"discountAmount": 12.0}], taxes=[], totalAmountAfterTaxesAndDiscounts=18.0)
    (warning,) = warnings_of(order(item))
    assert warning.path == "lineItems.0.discounts"
    assert warning.value == 12.0
    assert warning.message == (
        "order 1542: discounts look like line totals: quantity 3 x discounts per unit 12.00 = 36.00 exceeds "
        "the line's gross 30.00; send discounts per single unit"
    )


def test_taxes_that_exceed_the_gross_look_like_line_totals() -> None:
    item = line(discounts=[], taxes=[{"taxRate": 0.19, "taxAmount": 11.0}, {"taxAmount": 1.0}])
    (warning,) = warnings_of(order(item))
    assert warning.path == "lineItems.0.taxes"
    assert "quantity 3 x taxes per unit 12.00 = 36.00" in warning.message


def test_single_units_cannot_be_told_apart_and_are_not_flagged() -> None:
    item = line(quantity=1, totalAmountBeforeTaxesAndDiscounts=10.0, totalAmountAfterTaxesAndDiscounts=7.56)
    assert warnings_of(order(item)) == []


def test_lines_without_totals_or_quantity_are_not_checked() -> None:
    assert warnings_of(order({"id": "a", "productGmv": 5.0}, {"id": "b", "quantity": 2})) == []
    item = line()
    del item["totalAmountBeforeTaxesAndDiscounts"]
    assert warnings_of(order(item)) == []  # the gross is then gmv x quantity


def test_refunded_line_item_must_name_a_line_of_the_order() -> None:
    record = order(
        line(), refundedLineItems=[{"lineItemId": "L1"}, {"lineItemId": "L9", "refundedQuantity": 1}]
    )
    (warning,) = warnings_of(record)
    assert warning.path == "refundedLineItems.1.lineItemId"
    assert warning.value == "L9"
    assert (
        warning.message == "order 1542: refunded line item 'L9' is not among the order's line items (ids: L1)"
    )


def test_refunds_may_name_a_bundle_constituent() -> None:
    bundle = line(id="P", productGmv=0, quantity=1, productCogs=0, discounts=[], taxes=[])
    bundle.update(totalAmountBeforeTaxesAndDiscounts=0, totalAmountAfterTaxesAndDiscounts=0)
    bundle["bundledProducts"] = [line(id="C1")]
    assert warnings_of(order(bundle, refundedLineItems=[{"lineItemId": "C1"}])) == []


def bundle_parent(**overrides: Any) -> dict[str, Any]:
    parent = line(id="P", quantity=1, productGmv=0, productCogs=0, discounts=[], taxes=[])
    parent.update(totalAmountBeforeTaxesAndDiscounts=0, totalAmountAfterTaxesAndDiscounts=0)
    parent["bundledProducts"] = [line(id="C1"), line(id="C2")]
    parent.update(overrides)
    return parent


def test_bundle_parent_without_money_is_fine() -> None:
    assert warnings_of(order(bundle_parent())) == []


def test_bundle_parent_with_the_sum_of_its_constituents_is_fine() -> None:
    parent = bundle_parent(
        productGmv=60.0,
        productCogs=24.0,
        discounts=[{"discountAmount": 6.0}],
        taxes=[{"taxRate": 0.19, "taxAmount": 8.64}],
        totalAmountBeforeTaxesAndDiscounts=60.0,
        totalAmountAfterTaxesAndDiscounts=45.36,
    )
    assert warnings_of(order(parent)) == []


def test_bundle_parent_carrying_money_its_constituents_lack() -> None:
    free = {"id": "C", "productGmv": 0, "quantity": 2, "totalAmountBeforeTaxesAndDiscounts": 0}
    parent = bundle_parent(
        productGmv=49.9,
        taxes=[{"taxRate": 0.19, "taxAmount": 7.97}],
        totalAmountBeforeTaxesAndDiscounts=49.9,
        totalAmountAfterTaxesAndDiscounts=41.93,
        bundledProducts=[free],
    )
    warnings = warnings_of(order(parent))
    assert [w.path for w in warnings] == ["lineItems.0.productGmv", "lineItems.0.taxes"]
    assert warnings[0].message == (
        "order 1542: bundle parent carries gross 49.90 but its bundledProducts only 0.00; Klar ignores a "
        "bundle parent's money and sums the constituents, so put the amounts on the bundledProducts"
    )
    assert warnings[1].value == pytest.approx(7.97)


def test_constituents_are_checked_like_any_line_with_their_own_path() -> None:
    parent = bundle_parent()
    parent["bundledProducts"][1]["totalAmountAfterTaxesAndDiscounts"] = 1.0
    (warning,) = warnings_of(order(line(id="X"), parent))
    assert warning.path == "lineItems.1.bundledProducts.1.totalAmountAfterTaxesAndDiscounts"


def test_strict_turns_pitfalls_into_errors_and_keeps_the_record_back() -> None:
    record = order(line(totalAmountAfterTaxesAndDiscounts=25.0))
    lenient = LENIENT.validate(record)
    strict = STRICT.validate(record)
    assert lenient.valid
    assert lenient.record is record
    assert len(lenient.warnings) == 1
    assert not strict.valid
    assert strict.record is None
    assert strict.errors == lenient.warnings
    assert strict.warnings == ()
    assert strict.id == "1542"


def test_pitfalls_are_not_checked_on_invalid_records() -> None:
    record = order(line(totalAmountAfterTaxesAndDiscounts=25.0), cancelledAt=0)
    result = LENIENT.validate(record)
    assert [e.path for e in result.errors] == ["cancelledAt"]
    assert result.warnings == ()


def test_other_resources_have_no_pitfalls() -> None:
    validator = RecordValidator("refunds", "12.2022", strict=True)
    assert validator.validate({"id": "R", "lineItems": [{"lineItemId": "not-checked"}]}).valid


def test_check_order_directly() -> None:
    assert check_order({"id": "1"}) == []
    record = order(line(totalAmountAfterTaxesAndDiscounts=25.0))
    assert check_order(record)[0].message.startswith("order 1542: ")
    assert check_order(record, "ORD-9")[0].message.startswith("order ORD-9: ")
    assert record == order(line(totalAmountAfterTaxesAndDiscounts=25.0))  # not modified


def test_snake_case_orders_are_checked_after_conversion() -> None:
    record = {
        "id": "1",
        "line_items": [
            {"id": "a", "product_gmv": 10.0, "quantity": 2, "total_amount_before_taxes_and_discounts": 5.0}
        ],
    }
    (warning,) = LENIENT.validate(copy.deepcopy(record)).warnings
    assert warning.path == "lineItems.0.totalAmountBeforeTaxesAndDiscounts"


def test_a_warning_is_worded_when_read_and_otherwise_a_field_error() -> None:
    # Warnings are worded lazily (an upload reads few of them); they must behave as plain FieldErrors.
    (warning,) = warnings_of(order(line(totalAmountAfterTaxesAndDiscounts=25.0)))
    plain = FieldError(warning.path, warning.message, warning.value)
    assert isinstance(warning, FieldError)
    assert warning == plain
    assert plain == warning
    assert warning != FieldError(warning.path, "other", 25.0)
    assert hash(warning) == hash(plain)
    assert len({warning, plain}) == 1
    assert repr(warning) == repr(plain)
    assert str(warning) == str(plain)
    assert warning.to_dict() == plain.to_dict()
    copied = pickle.loads(pickle.dumps(warning))  # as validation workers hand results back
    assert type(copied) is FieldError
    assert copied == plain
    with pytest.raises(AttributeError):  # frozen, as FieldError is
        warning.path = "elsewhere"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        warning.message = "other"  # type: ignore[misc]
