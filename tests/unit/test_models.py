"""The models: every Klar field, camelCase aliases, both names on input, exact round trips, descriptions."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from airflow_provider_klar.models import (
    Cogs,
    Customer,
    Discount,
    LineItem,
    LogisticsCosts,
    OptionalIdentifiers,
    Order,
    Refund,
    RefundedLineItem,
    Shipping,
    Tax,
    TransactionCosts,
)
from airflow_provider_klar.models.orders import LineItem_12_2022, Order_12_2022

#: Every field klar-api.md names, per object, in Klar's JSON spelling.
KLAR_FIELDS: dict[type[pydantic.BaseModel], set[str]] = {
    Order: {
        "id", "createdAt", "updatedAt", "processedAt", "closedAt", "cancelledAt", "currencyCodeIso3Letter",
        "financialStatus", "shipmentStatus", "paymentGatewayName", "paymentMethodName", "orderName",
        "orderNumber", "tags", "lineItems", "refundedLineItems", "shipping", "transactionCosts", "customer",
        "optionalIdentifiers",
    },
    LineItem: {
        "id", "productName", "productId", "productVariantName", "productVariantId", "productBrand",
        "productCollection", "sku", "productCogs", "productGmv", "productShippingWeightInGrams", "quantity",
        "productTags", "discounts", "taxes", "totalAmountBeforeTaxesAndDiscounts",
        "totalAmountAfterTaxesAndDiscounts", "totalLogisticsCosts", "bundledProducts",
    },
    Discount: {"title", "descriptor", "target", "voucherCode", "voucherType", "isVoucher", "discountAmount"},
    Tax: {"title", "descriptor", "taxRate", "taxAmount"},
    Shipping: {
        "city", "provinceOrState", "countryCodeIso3Letter", "countryCodeIso2Letter", "currencyCodeIso3Letter",
        "zipOrPostalCode", "providerDescriptor", "shippingTotalAmountBeforeTaxAndDiscounts",
        "shippingTotalAmountAfterTaxAndDiscounts", "totalLogisticsCosts", "discounts", "taxes",
    },
    Customer: {"id", "email", "emailHash", "isNewsletterSubscriberAtTimeOfCheckout", "tags"},
    OptionalIdentifiers: {
        "googleAnalyticsTransactionId", "googleAnalyticsTransactionID", "orderSourceName", "orderChannelName",
        "orderPlatformName", "utmSource", "utmMedium", "utmCampaign", "utmTerm", "utmContent", "landingPage",
        "isSubscriptionOrder", "isFirstSubscriptionOrder",
    },
    RefundedLineItem: {
        "id", "lineItemId", "reasonDescriptor", "refundedQuantity", "refundQuantity", "createdAt",
        "processedAt",
    },
    Refund: {"id", "createdAt", "updatedAt", "lineItems"},
    Cogs: {"orderId", "lineItemId", "sku", "productCogs"},
    LogisticsCosts: {"orderId", "totalLogisticsCosts"},
    TransactionCosts: {"orderId", "transactionCosts"},
}  # fmt: skip

ALL_MODELS = [*KLAR_FIELDS, Order_12_2022, LineItem_12_2022]


def aliases(model: type[pydantic.BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


@pytest.mark.parametrize("model", list(KLAR_FIELDS), ids=lambda m: m.__name__)
def test_every_klar_field_is_a_model_field_with_its_camel_case_alias(model: type[pydantic.BaseModel]) -> None:
    assert aliases(model) == KLAR_FIELDS[model]


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_description_and_a_snake_case_attribute(model: type[pydantic.BaseModel]) -> None:
    for name, info in model.model_fields.items():
        assert info.description, f"{model.__name__}.{name} has no description"
        assert name == name.lower(), name
        assert info.alias is not None
        assert "_" not in info.alias


def test_legacy_shapes_have_the_same_fields_except_bundles() -> None:
    assert aliases(Order_12_2022) == aliases(Order)
    assert aliases(LineItem_12_2022) == aliases(LineItem)
    assert LineItem_12_2022.model_fields["bundled_products"].description


REQUIRED = {
    Order: {"id"},
    LineItem: {"id"},
    RefundedLineItem: {"lineItemId"},
    Refund: {"id"},
    Cogs: {"orderId", "productCogs"},
    LogisticsCosts: {"orderId", "totalLogisticsCosts"},
    TransactionCosts: {"orderId", "transactionCosts"},
    Discount: set(),
    Tax: set(),
    Shipping: set(),
    Customer: set(),
    OptionalIdentifiers: set(),
}


@pytest.mark.parametrize("model", list(REQUIRED), ids=lambda m: m.__name__)
def test_required_fields_are_the_ids_and_the_cost_values(model: type[pydantic.BaseModel]) -> None:
    required = {info.alias for info in model.model_fields.values() if info.is_required()}
    assert required == REQUIRED[model]
    with pytest.raises(pydantic.ValidationError) if required else _no_error():
        model.model_validate({})


class _no_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


ORDER: dict[str, Any] = {
    "id": "100001",
    "createdAt": 1697234232,
    "closedAt": 0,
    "currencyCodeIso3Letter": "EUR",
    "financialStatus": "paid",
    "tags": ["web"],
    "lineItems": [
        {
            "id": "1",
            "productName": "Mug",
            "productGmv": 16.0,
            "quantity": 2,
            "discounts": [{"title": "10%", "descriptor": None, "isVoucher": False, "discountAmount": 1.6}],
            "taxes": [{"title": "VAT", "descriptor": "", "taxRate": 0.19, "taxAmount": 2.3}],
            "totalAmountBeforeTaxesAndDiscounts": 32.0,
            "totalAmountAfterTaxesAndDiscounts": 24.2,
            "bundledProducts": [{"id": "1-a", "quantity": 2, "futureField": {"x": [1, 2]}}],
        }
    ],
    "refundedLineItems": [],
    "shipping": {"provinceOrState": None, "providerDescriptor": None, "countryCodeIso2Letter": "DE"},
    "customer": {"emailHash": "a" * 40, "isNewsletterSubscriberAtTimeOfCheckout": True},
    "optionalIdentifiers": {"utmSource": "google", "isSubscriptionOrder": False},
    "someNewTopLevelField": "kept",
}


def test_round_trip_gives_back_the_input_exactly_with_unknown_fields_and_int_float_kinds() -> None:
    order = Order.model_validate(ORDER)
    dumped = order.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped == ORDER
    # Not only equal: ints stay ints and floats stay floats, so the JSON text matches key for key.
    assert json.dumps(dumped, sort_keys=True) == json.dumps(ORDER, sort_keys=True)
    assert isinstance(dumped["lineItems"][0]["quantity"], int)
    assert isinstance(dumped["lineItems"][0]["productGmv"], float)


def test_output_is_camel_case_by_default_and_unset_fields_stay_out() -> None:
    order = Order.model_validate({"id": "1", "created_at": 5})
    assert order.model_dump(exclude_unset=True) == {"id": "1", "createdAt": 5}
    assert json.loads(order.model_dump_json(exclude_unset=True)) == {"id": "1", "createdAt": 5}
    assert order.cancelled_at is None  # not sent reads as None ...
    assert "cancelledAt" not in order.model_dump(exclude_unset=True)  # ... and is not invented on output


def test_snake_case_and_camel_case_names_are_both_accepted_also_nested_and_mixed() -> None:
    by_name = Order.model_validate(
        {"id": "1", "currency_code_iso3_letter": "EUR", "line_items": [{"id": "a", "productGmv": 2}]}
    )
    by_alias = Order.model_validate(
        {"id": "1", "currencyCodeIso3Letter": "EUR", "lineItems": [{"id": "a", "product_gmv": 2}]}
    )
    assert by_name == by_alias
    assert by_name.line_items is not None
    assert by_name.line_items[0].product_gmv == 2


def test_python_construction_by_attribute_name() -> None:
    order = Order(
        id="1",
        line_items=[
            LineItem(id="a", product_gmv=10.0, quantity=1, taxes=[Tax(tax_rate=0.07, tax_amount=0.65)])
        ],
        customer=Customer(email_hash="f" * 40),
    )
    assert order.model_dump(mode="json", exclude_unset=True) == {
        "id": "1",
        "lineItems": [
            {"id": "a", "productGmv": 10.0, "quantity": 1, "taxes": [{"taxRate": 0.07, "taxAmount": 0.65}]}
        ],
        "customer": {"emailHash": "f" * 40},
    }


def test_unknown_fields_pass_through_nested_objects_too() -> None:
    line = LineItem.model_validate({"id": "a", "taxes": [{"taxRate": 0.1, "newTaxField": 1}], "x": None})
    assert line.model_extra == {"x": None}
    assert line.taxes is not None
    assert line.taxes[0].model_extra == {"newTaxField": 1}


def test_recursive_bundles_validate_at_any_depth() -> None:
    nested = {"id": "p", "bundledProducts": [{"id": "c", "bundledProducts": [{"id": "g", "quantity": 1}]}]}
    line = LineItem.model_validate(nested)
    assert line.model_dump(mode="json", exclude_unset=True) == nested


@pytest.mark.parametrize(
    ("model", "record"),
    [
        (Refund, {"id": "R1", "createdAt": 1, "updatedAt": 2, "lineItems": []}),
        (Refund, {"id": "R1", "lineItems": [{"id": "x", "lineItemId": "1", "refundedQuantity": 1.0}]}),
        (Cogs, {"orderId": "1", "lineItemId": "a", "productCogs": 3.5}),
        (Cogs, {"orderId": "1", "sku": "SKU-1", "productCogs": 0}),
        (LogisticsCosts, {"orderId": "1", "totalLogisticsCosts": 4.9}),
        (TransactionCosts, {"orderId": "1", "transactionCosts": 0.35}),
    ],
)
def test_cost_and_refund_records_round_trip(model: type[pydantic.BaseModel], record: dict[str, Any]) -> None:
    assert model.model_validate(record).model_dump(mode="json", exclude_unset=True) == record


def test_cogs_need_a_line_item_id_or_a_sku() -> None:
    with pytest.raises(pydantic.ValidationError, match="lineItemId or sku"):
        Cogs.model_validate({"orderId": "1", "productCogs": 1})


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (Discount, "descriptor"),
        (Tax, "descriptor"),
        (Shipping, "provinceOrState"),
        (Shipping, "providerDescriptor"),
    ],
)
def test_null_is_accepted_where_klar_allows_it(model: type[pydantic.BaseModel], field: str) -> None:
    assert model.model_validate({field: None}).model_dump(exclude_unset=True) == {field: None}


NON_NULLABLE = [
    (Order, {"id": "1", "cancelledAt": None}),
    (Order, {"id": "1", "orderName": None}),
    (Order, {"id": "1", "lineItems": None}),
    (Order, {"id": "1", "customer": None}),
    (LineItem, {"id": "1", "quantity": None}),
    (Discount, {"title": None}),
    (Shipping, {"city": None}),
    (Customer, {"email": None}),
    (Cogs, {"orderId": None, "sku": "x", "productCogs": 1}),
]


@pytest.mark.parametrize(("model", "record"), NON_NULLABLE)
def test_null_is_rejected_elsewhere(model: type[pydantic.BaseModel], record: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        model.model_validate(record)


def test_nested_model_instances_are_accepted_in_dicts() -> None:
    order = Order.model_validate({"id": "1", "customer": Customer(email="a@b.c")})
    assert order.model_dump(exclude_unset=True) == {"id": "1", "customer": {"email": "a@b.c"}}


def test_dumps_leave_unset_fields_out_by_default_so_no_nulls_are_invented() -> None:
    order = Order(id="1", line_items=[LineItem(id="a", quantity=2)])
    assert order.model_dump() == {"id": "1", "lineItems": [{"id": "a", "quantity": 2}]}
    assert json.loads(order.model_dump_json()) == {"id": "1", "lineItems": [{"id": "a", "quantity": 2}]}
    everything = order.model_dump(exclude_unset=False)
    assert everything["cancelledAt"] is None
    assert set(everything) == {info.alias for info in Order.model_fields.values()}
    assert order.model_dump(by_alias=False) == {"id": "1", "line_items": [{"id": "a", "quantity": 2}]}
