"""Realistic payloads in the shapes the Magento integrations send: valid, round-tripping, pitfall-free."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from airflow_provider_klar.models import RecordValidator, model_for

# A guest order of a simple product: integer quantity, no discount, closedAt 0, nothing refunded,
# emailHash with a placeholder e-mail, a null province, a null discount descriptor, identifiers.
SIMPLE_GUEST = {
    "id": "5821",
    "orderName": "000005821",
    "orderNumber": "000005821",
    "createdAt": 1697234232,
    "updatedAt": 1697234290,
    "processedAt": 1697234290,
    "closedAt": 0,
    "currencyCodeIso3Letter": "EUR",
    "financialStatus": "processing",
    "shipmentStatus": "not_shipped",
    "paymentGatewayName": "paypal_express",
    "paymentMethodName": "PayPal Express Checkout",
    "tags": [],
    "lineItems": [
        {
            "id": "11234",
            "productName": "Bio Espresso Bohnen 1kg",
            "productId": "2051",
            "productVariantName": "",
            "productVariantId": "2051",
            "productBrand": "Röstwerk",
            "productCollection": "Kaffee",
            "sku": "RW-ESP-1000",
            "productCogs": 9.1,
            "productGmv": 24.9,
            "productShippingWeightInGrams": 1050.0,
            "quantity": 1,
            "productTags": [],
            "discounts": [],
            "taxes": [{"title": "MwSt. 7%", "descriptor": "DE-7", "taxRate": 0.07, "taxAmount": 1.63}],
            "totalAmountBeforeTaxesAndDiscounts": 24.9,
            "totalAmountAfterTaxesAndDiscounts": 23.27,
            "totalLogisticsCosts": 0,
        }
    ],
    "refundedLineItems": [],
    "shipping": {
        "city": "Hamburg",
        "provinceOrState": None,
        "countryCodeIso3Letter": "DEU",
        "countryCodeIso2Letter": "DE",
        "currencyCodeIso3Letter": "EUR",
        "zipOrPostalCode": "20095",
        "providerDescriptor": "flatrate_flatrate",
        "shippingTotalAmountBeforeTaxAndDiscounts": 4.9,
        "shippingTotalAmountAfterTaxAndDiscounts": 4.12,
        "totalLogisticsCosts": 0,
        "discounts": [
            {
                "title": "Free shipping",
                "descriptor": None,
                "voucherCode": "",
                "isVoucher": False,
                "discountAmount": 0,
            }
        ],
        "taxes": [{"title": "MwSt. 19%", "descriptor": "DE-19", "taxRate": 0.19, "taxAmount": 0.78}],
    },
    "transactionCosts": 0,
    "customer": {
        "id": "5f4dcc3b5aa765d61d8327deb882cf99",
        "email": "hidden@klar.placeholder",
        "emailHash": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
        "isNewsletterSubscriberAtTimeOfCheckout": False,
        "tags": ["NOT LOGGED IN"],
    },
    "optionalIdentifiers": {
        "orderSourceName": "web",
        "orderChannelName": "Main Website Store",
        "orderPlatformName": "magento2",
        "isSubscriptionOrder": False,
        "isFirstSubscriptionOrder": False,
    },
}

# A registered customer's order: Magento's decimal quantities as floats, a voucher discount per unit,
# taxes per unit after the discount, a partial refund through a credit memo, UTM parameters.
REGISTERED_WITH_REFUND = {
    "id": "7730",
    "orderName": "#100007730",
    "orderNumber": "100007730",
    "createdAt": 1704103200,
    "updatedAt": 1704880000,
    "processedAt": 1704189600,
    "closedAt": 0,
    "currencyCodeIso3Letter": "CHF",
    "financialStatus": "partially_refunded",
    "shipmentStatus": "shipped",
    "paymentGatewayName": "stripe_payments",
    "paymentMethodName": "card",
    "tags": ["b2c"],
    "lineItems": [
        {
            "id": "30511",
            "productName": "Merino Pullover",
            "productId": "811",
            "productVariantName": "Merino Pullover-M-Navy",
            "productVariantId": "815",
            "productBrand": "Northwind",
            "productCollection": "Strick",
            "sku": "NW-MER-M-NAV",
            "productCogs": 31.0,
            "productGmv": 99.0,
            "productShippingWeightInGrams": 420.0,
            "quantity": 2.0,
            "productTags": ["winter"],
            "discounts": [
                {
                    "title": "WINTER10",
                    "descriptor": None,
                    "voucherCode": "WINTER10",
                    "voucherType": "by_percent",
                    "isVoucher": True,
                    "discountAmount": 9.9,
                }
            ],
            "taxes": [{"title": "MWST", "descriptor": "CH-8.1", "taxRate": 0.081, "taxAmount": 6.68}],
            "totalAmountBeforeTaxesAndDiscounts": 198.0,
            "totalAmountAfterTaxesAndDiscounts": 164.84,
            "totalLogisticsCosts": 0,
        },
        {
            "id": "30512",
            "productName": "Wollsocken 3er-Pack",
            "productId": "902",
            "productVariantName": "",
            "productVariantId": "902",
            "productBrand": "Northwind",
            "productCollection": "Accessoires",
            "sku": "NW-SOCK-3",
            "productCogs": 6.5,
            "productGmv": 24.0,
            "productShippingWeightInGrams": 150.0,
            "quantity": 1.0,
            "productTags": [],
            "discounts": [],
            "taxes": [{"title": "MWST", "descriptor": "CH-8.1", "taxRate": 0.081, "taxAmount": 1.8}],
            "totalAmountBeforeTaxesAndDiscounts": 24.0,
            "totalAmountAfterTaxesAndDiscounts": 22.2,
            "totalLogisticsCosts": 0,
        },
    ],
    "refundedLineItems": [
        {
            "id": "912",
            "lineItemId": "30511",
            "reasonDescriptor": "",
            "refundedQuantity": 1.0,
            "createdAt": 1704880000,
            "processedAt": 1704880000,
        }
    ],
    "shipping": {
        "city": "Zürich",
        "provinceOrState": "Zürich",
        "countryCodeIso3Letter": "CHE",
        "countryCodeIso2Letter": "CH",
        "currencyCodeIso3Letter": "CHF",
        "zipOrPostalCode": "8004",
        "providerDescriptor": "Post CH Priority",
        "shippingTotalAmountBeforeTaxAndDiscounts": 9.0,
        "shippingTotalAmountAfterTaxAndDiscounts": 8.33,
        "totalLogisticsCosts": 7.4,
        "discounts": [],
        "taxes": [{"title": "MWST", "descriptor": "CH-8.1", "taxRate": 0.081, "taxAmount": 0.67}],
    },
    "transactionCosts": 3.95,
    "customer": {
        "id": "4411",
        "email": "anna.muster@example.ch",
        "emailHash": "1f8ac10f23c5b5bc1167bda84b833e5c057a77d2",
        "isNewsletterSubscriberAtTimeOfCheckout": True,
        "tags": ["General"],
    },
    "optionalIdentifiers": {
        "googleAnalyticsTransactionId": "100007730",
        "orderSourceName": "web",
        "orderChannelName": "ch_store_de",
        "orderPlatformName": "magento2",
        "utmSource": "newsletter",
        "utmMedium": "email",
        "utmCampaign": "winter-sale",
        "utmTerm": "",
        "utmContent": "hero",
        "landingPage": "https://shop.example.ch/de/winter",
        "isSubscriptionOrder": False,
        "isFirstSubscriptionOrder": False,
    },
}

# A 07.2025 bundle: the parent carries no money (dynamic price), the constituents carry all of it;
# the integration also sends a field this package does not know.
BUNDLE_07_2025 = {
    "id": "9902",
    "orderName": "#9902",
    "orderNumber": "9902",
    "createdAt": 1752000000,
    "updatedAt": 1752000100,
    "processedAt": 1752086400,
    "closedAt": 1752500000,
    "currencyCodeIso3Letter": "EUR",
    "financialStatus": "paid",
    "shipmentStatus": "shipped",
    "paymentGatewayName": "adyen",
    "paymentMethodName": "klarna_paynow",
    "tags": [],
    "lineItems": [
        {
            "id": "44001",
            "productName": "Pour-Over Starter Set",
            "productId": "3100",
            "sku": "RW-SET-PO",
            "productGmv": 0,
            "quantity": 1,
            "discounts": [],
            "taxes": [],
            "totalAmountBeforeTaxesAndDiscounts": 0,
            "totalAmountAfterTaxesAndDiscounts": 0,
            "bundledProducts": [
                {
                    "id": "44002",
                    "productName": "Ceramic Dripper",
                    "productId": "3101",
                    "sku": "RW-DRIP",
                    "productCogs": 8.0,
                    "productGmv": 29.0,
                    "quantity": 1,
                    "discounts": [],
                    "taxes": [{"title": "MwSt.", "descriptor": None, "taxRate": 0.19, "taxAmount": 4.63}],
                    "totalAmountBeforeTaxesAndDiscounts": 29.0,
                    "totalAmountAfterTaxesAndDiscounts": 24.37,
                },
                {
                    "id": "44003",
                    "productName": "Paper Filters",
                    "productId": "3102",
                    "sku": "RW-FILT",
                    "productCogs": 0.9,
                    "productGmv": 4.5,
                    "quantity": 2,
                    "discounts": [],
                    "taxes": [{"title": "MwSt.", "descriptor": None, "taxRate": 0.19, "taxAmount": 0.72}],
                    "totalAmountBeforeTaxesAndDiscounts": 9.0,
                    "totalAmountAfterTaxesAndDiscounts": 7.56,
                },
            ],
        }
    ],
    "refundedLineItems": [],
    "shipping": {
        "city": "Köln",
        "provinceOrState": "Nordrhein-Westfalen",
        "countryCodeIso3Letter": "DEU",
        "countryCodeIso2Letter": "DE",
        "currencyCodeIso3Letter": "EUR",
        "zipOrPostalCode": "50667",
        "providerDescriptor": None,
        "shippingTotalAmountBeforeTaxAndDiscounts": 0,
        "shippingTotalAmountAfterTaxAndDiscounts": 0,
        "totalLogisticsCosts": 4.2,
        "discounts": [],
        "taxes": [],
    },
    "transactionCosts": 0.61,
    "customer": {
        "id": "882",
        "email": "k@example.de",
        "isNewsletterSubscriberAtTimeOfCheckout": False,
        "tags": [],
    },
    "optionalIdentifiers": {"orderSourceName": "web", "orderPlatformName": "magento2", "storeViewCode": "de"},
}

PAYLOADS = {
    "simple-guest-12.2022": (SIMPLE_GUEST, "12.2022"),
    "simple-guest-07.2025": (SIMPLE_GUEST, "07.2025"),
    "registered-refund-12.2022": (REGISTERED_WITH_REFUND, "12.2022"),
    "registered-refund-07.2025": (REGISTERED_WITH_REFUND, "07.2025"),
    "bundle-07.2025": (BUNDLE_07_2025, "07.2025"),
}


@pytest.mark.parametrize(("payload", "version"), PAYLOADS.values(), ids=list(PAYLOADS))
def test_realistic_payload_is_valid_without_pitfalls_even_when_strict(
    payload: dict[str, Any], version: str
) -> None:
    result = RecordValidator("orders", version, strict=True).validate(payload)
    assert result.errors == ()
    assert result.warnings == ()
    assert result.record is payload


@pytest.mark.parametrize(("payload", "version"), PAYLOADS.values(), ids=list(PAYLOADS))
def test_realistic_payload_round_trips_exactly(payload: dict[str, Any], version: str) -> None:
    dumped = (
        model_for("orders", version)
        .model_validate(payload)
        .model_dump(mode="json", by_alias=True, exclude_unset=True)
    )
    assert dumped == payload
    assert json.dumps(dumped, sort_keys=True, ensure_ascii=False) == json.dumps(
        payload, sort_keys=True, ensure_ascii=False
    )


def test_unknown_field_of_an_integration_is_reported_and_kept() -> None:
    result = RecordValidator("orders", "07.2025").validate(BUNDLE_07_2025)
    assert result.unknown_fields == ("optionalIdentifiers.storeViewCode",)
    assert result.record is not None
    assert result.record["optionalIdentifiers"]["storeViewCode"] == "de"


@pytest.mark.parametrize(("payload", "version"), PAYLOADS.values(), ids=list(PAYLOADS))
def test_older_payloads_with_cancelled_at_zero_fail_for_that_field_alone(
    payload: dict[str, Any], version: str
) -> None:
    older = copy.deepcopy(payload)
    older["cancelledAt"] = 0
    result = RecordValidator("orders", version).validate(older)
    assert [(e.path, e.value) for e in result.errors] == [("cancelledAt", 0)]
    assert result.id == payload["id"]


def test_bundle_payload_for_the_legacy_version_names_07_2025() -> None:
    result = RecordValidator("orders", "12.2022").validate(BUNDLE_07_2025)
    assert [e.path for e in result.errors] == ["lineItems.0.bundledProducts"]
    assert "07.2025" in result.errors[0].message
