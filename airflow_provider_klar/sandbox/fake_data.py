"""Realistic fake Klar records for demos, tests and benchmarks.

Every record is valid and internally consistent: line totals match unit values, taxes are computed
after discounts, bundle parents carry exactly what their constituents add up to, and refunded line
items point at the order's own line items, so no pitfall check warns. Record ``n`` depends only on
``seed`` and ``n`` (not on how many records are asked for), so ``fake_orders(5, start=10)`` gives the
same records as the last five of ``fake_orders(15)``. A typical order is about 2 KB as JSON.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from typing import Any

#: 2024-01-01T00:00:00Z: orders are placed after it, at most a year later.
EPOCH = 1_704_067_200

_PRODUCTS = (
    ("Merino Crew Sweater", "Northwind", "Knitwear", 89.90, 420),
    ("Organic Cotton T-Shirt", "Northwind", "Basics", 24.95, 180),
    ("Trail Running Shoe", "Fjellsko", "Footwear", 139.00, 780),
    ("Waxed Canvas Backpack", "Fjellsko", "Bags", 119.00, 1150),
    ("Cold Brew Coffee Beans 1kg", "Roestwerk", "Coffee", 29.90, 1000),
    ("Ceramic Pour-Over Set", "Roestwerk", "Equipment", 49.00, 890),
    ("Bamboo Toothbrush 4-Pack", "Grünzeug", "Care", 9.99, 90),
    ("Natural Face Cream 50ml", "Grünzeug", "Care", 34.50, 120),
    ("Linen Duvet Cover", "Hjem", "Bedroom", 149.00, 1400),
    ("Stoneware Mug", "Hjem", "Kitchen", 16.00, 380),
)
_VARIANTS = ("S", "M", "L", "XL", "Black", "Sand", "Olive", "Navy", "Default")
_CITIES = (
    ("Berlin", "Berlin", "DE", "DEU", "10115", 0.19),
    ("München", "Bayern", "DE", "DEU", "80331", 0.19),
    ("Wien", "Wien", "AT", "AUT", "1010", 0.20),
    ("Zürich", "Zürich", "CH", "CHE", "8001", 0.081),
    ("Amsterdam", None, "NL", "NLD", "1012 AB", 0.21),
    ("Paris", "Île-de-France", "FR", "FRA", "75001", 0.20),
)
_CURRENCY = {"DE": "EUR", "AT": "EUR", "NL": "EUR", "FR": "EUR", "CH": "CHF"}
_GATEWAYS = (("paypal", "paypal"), ("stripe", "credit_card"), ("klarna", "invoice"), ("adyen", "sofort"))
_CARRIERS = ("DHL Paket", "DPD Classic", "UPS Standard", "GLS Business", None)
_SOURCES = (("google", "cpc"), ("newsletter", "email"), ("instagram", "social"), ("(direct)", "(none)"))


def _rng(kind: str, seed: int, n: int) -> random.Random:
    # A string seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
    return random.Random(f"{kind}:{seed}:{n}")


def _cents(value: float) -> float:
    return round(value + 1e-9, 2)


def _line(
    rng: random.Random, line_id: str, tax_rate: float, *, quantity: int | None = None
) -> dict[str, Any]:
    name, brand, collection, price, grams = rng.choice(_PRODUCTS)
    variant = rng.choice(_VARIANTS)
    q = quantity if quantity is not None else rng.choice((1, 1, 1, 2, 2, 3, 4))
    gmv = _cents(price * rng.choice((1.0, 1.0, 0.9, 1.1)))
    discounts: list[dict[str, Any]] = []
    if rng.random() < 0.35:
        share = rng.choice((0.1, 0.15, 0.2))
        is_voucher = rng.random() < 0.5
        discounts.append(
            {
                "title": f"{int(share * 100)}% off",
                "descriptor": None if is_voucher else "Seasonal sale",
                "voucherCode": f"SAVE{int(share * 100)}" if is_voucher else "",
                "voucherType": "percentage",
                "isVoucher": is_voucher,
                "discountAmount": _cents(gmv * share),
            }
        )
    per_unit_discount = sum(d["discountAmount"] for d in discounts)
    # Taxes are per unit and computed after discounts, from a gross price that includes them.
    tax_amount = _cents((gmv - per_unit_discount) * tax_rate / (1 + tax_rate))
    taxes = [
        {
            "title": f"VAT {tax_rate * 100:g}%",
            "descriptor": "standard rate",
            "taxRate": tax_rate,
            "taxAmount": tax_amount,
        }
    ]
    product_id = hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()[:8]
    return {
        "id": line_id,
        "productName": name,
        "productId": product_id,
        "productVariantName": variant,
        "productVariantId": f"{product_id}-{variant.lower()}",
        "productBrand": brand,
        "productCollection": collection,
        "sku": f"{brand[:3].upper()}-{product_id[:4].upper()}-{variant[:2].upper()}",
        "productCogs": _cents(gmv * 0.35),
        "productGmv": gmv,
        "productShippingWeightInGrams": grams,
        "quantity": q,
        "productTags": [collection.lower(), brand.lower()],
        "discounts": discounts,
        "taxes": taxes,
        "totalAmountBeforeTaxesAndDiscounts": _cents(gmv * q),
        "totalAmountAfterTaxesAndDiscounts": _cents(gmv * q - q * per_unit_discount - q * tax_amount),
        "totalLogisticsCosts": _cents(0.4 * q),
    }


def _bundle_discount(amount: float) -> dict[str, Any]:
    return {
        "title": "Bundle discounts",
        "descriptor": None,
        "voucherCode": "",
        "voucherType": "percentage",
        "isVoucher": False,
        "discountAmount": amount,
    }


def _bundle(rng: random.Random, line_id: str, tax_rate: float) -> dict[str, Any]:
    """Return a bundle of 2-3 constituents; the parent (quantity 1) carries exactly their sums."""
    children = [_line(rng, f"{line_id}-{k}", tax_rate) for k in range(rng.choice((2, 3)))]
    parent = _line(rng, line_id, tax_rate, quantity=1)
    gross = _cents(sum(c["totalAmountBeforeTaxesAndDiscounts"] for c in children))
    discount = _cents(sum(c["quantity"] * sum(d["discountAmount"] for d in c["discounts"]) for c in children))
    tax = _cents(sum(c["quantity"] * c["taxes"][0]["taxAmount"] for c in children))
    parent.update(
        productName=f"Bundle: {children[0]['productName']} & more",
        productGmv=gross,
        productCogs=_cents(sum(c["quantity"] * c["productCogs"] for c in children)),
        discounts=[_bundle_discount(discount)] if discount else [],
        totalAmountBeforeTaxesAndDiscounts=gross,
        totalAmountAfterTaxesAndDiscounts=_cents(gross - discount - tax),
        bundledProducts=children,
    )
    parent["taxes"][0]["taxAmount"] = tax
    return parent


def fake_order(n: int, *, seed: int = 0, version: str = "07.2025") -> dict[str, Any]:
    """Return fake order number ``n`` (id ``ORD-<n>``).

    :param n: The order's number; its id is ``ORD-<n>`` and its line items ``LI-<n>-<k>``.
    :param seed: Selects another, equally realistic data set.
    :param version: ``07.2025`` may include bundles; ``12.2022`` never does.
    """
    rng = _rng("order", seed, n)
    city, province, iso2, iso3, zip_code, tax_rate = rng.choice(_CITIES)
    currency = _CURRENCY[iso2]
    month, _, year = version.partition(".")
    bundles = (int(year), int(month)) >= (2025, 7)
    lines = []
    for k in range(rng.choice((1, 1, 1, 1, 1, 2, 2, 3, 4, 5))):
        line_id = f"LI-{n}-{k}"
        lines.append(
            _bundle(rng, line_id, tax_rate)
            if bundles and rng.random() < 0.06
            else _line(rng, line_id, tax_rate)
        )
    created = EPOCH + rng.randrange(365 * 86400)
    refunded = []
    if rng.random() < 0.15:
        line = rng.choice(lines)
        refunded.append(
            {
                "id": f"RLI-{n}-0",
                "lineItemId": line["id"],
                "reasonDescriptor": rng.choice(("too small", "damaged", "changed mind")),
                "refundedQuantity": 1,
                "createdAt": created + 8 * 86400,
                "processedAt": created + 9 * 86400,
            }
        )
    gateway, method = rng.choice(_GATEWAYS)
    utm_source, utm_medium = rng.choice(_SOURCES)
    email = f"customer{n % 5000}@example.com"
    shipping_gross = rng.choice((0.0, 4.95, 5.90))
    shipping_tax = _cents(shipping_gross * tax_rate / (1 + tax_rate))
    order: dict[str, Any] = {
        "id": f"ORD-{n}",
        "createdAt": created,
        "updatedAt": created + 3600,
        "processedAt": created + 86400,
        "closedAt": 0,
        "currencyCodeIso3Letter": currency,
        "financialStatus": "partially_refunded" if refunded else rng.choice(("paid", "paid", "pending")),
        "shipmentStatus": rng.choice(("shipped", "shipped", "not_shipped", "partially_shipped")),
        "paymentGatewayName": gateway,
        "paymentMethodName": method,
        "orderName": f"#{100000 + n}",
        "orderNumber": str(100000 + n),
        "tags": rng.sample(["web", "first_order", "returning", "gift", "express"], 2),
        "lineItems": lines,
        "refundedLineItems": refunded,
        "shipping": {
            "city": city,
            "provinceOrState": province,
            "countryCodeIso3Letter": iso3,
            "countryCodeIso2Letter": iso2,
            "currencyCodeIso3Letter": currency,
            "zipOrPostalCode": zip_code,
            "providerDescriptor": rng.choice(_CARRIERS),
            "shippingTotalAmountBeforeTaxAndDiscounts": shipping_gross,
            "shippingTotalAmountAfterTaxAndDiscounts": _cents(shipping_gross - shipping_tax),
            "totalLogisticsCosts": _cents(rng.uniform(3.5, 7.5)),
            "discounts": [],
            "taxes": [
                {"title": "VAT", "descriptor": "shipping", "taxRate": tax_rate, "taxAmount": shipping_tax}
            ],
        },
        "transactionCosts": _cents(rng.uniform(0.2, 2.5)),
        "customer": {
            "id": hashlib.md5(email.encode(), usedforsecurity=False).hexdigest(),
            "email": email,
            "emailHash": hashlib.sha1(b"klar-salt" + email.encode(), usedforsecurity=False).hexdigest(),
            "isNewsletterSubscriberAtTimeOfCheckout": rng.random() < 0.3,
            "tags": [],
        },
        "optionalIdentifiers": {
            "orderSourceName": "web",
            "orderChannelName": "online_store",
            "orderPlatformName": "magento",
            "utmSource": utm_source,
            "utmMedium": utm_medium,
            "utmCampaign": rng.choice(("spring_sale", "brand", "retargeting")),
            "isSubscriptionOrder": False,
            "isFirstSubscriptionOrder": False,
        },
    }
    if order["financialStatus"] == "pending" and rng.random() < 0.2:
        order["financialStatus"] = "cancelled"
        order["cancelledAt"] = created + 7200
    return order


def fake_orders(
    n: int, *, seed: int = 0, version: str = "07.2025", start: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` fake orders, ``ORD-<start>`` to ``ORD-<start + n - 1>``.

    :param n: How many orders.
    :param seed: Selects another, equally realistic data set.
    :param version: The orders API version (``12.2022`` orders have no bundles).
    :param start: The number of the first order.
    """
    for i in range(start, start + n):
        yield fake_order(i, seed=seed, version=version)


def fake_refunds(n: int, *, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``n`` fake refunds ``REF-<i>``, each refunding line ``LI-<i>-0`` of order ``ORD-<i>``.

    :param n: How many refunds.
    :param seed: Selects another data set.
    :param start: The number of the first refund.
    """
    for i in range(start, start + n):
        rng = _rng("refund", seed, i)
        created = EPOCH + rng.randrange(365 * 86400)
        yield {
            "id": f"REF-{i}",
            "createdAt": created,
            "updatedAt": created + 600,
            "lineItems": [
                {
                    "id": f"RLI-{i}-0",
                    "lineItemId": f"LI-{i}-0",
                    "reasonDescriptor": rng.choice(("too small", "damaged", "changed mind")),
                    "refundedQuantity": 1,
                    "createdAt": created,
                    "processedAt": created + 86400,
                }
            ],
        }


def fake_cogs(n: int, *, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``n`` fake COGS records for line ``LI-<i>-0`` of order ``ORD-<i>``.

    :param n: How many records.
    :param seed: Selects another data set.
    :param start: The number of the first record.
    """
    for i in range(start, start + n):
        rng = _rng("cogs", seed, i)
        yield {"orderId": f"ORD-{i}", "lineItemId": f"LI-{i}-0", "productCogs": _cents(rng.uniform(2, 60))}


def fake_logistics_costs(n: int, *, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``n`` fake logistics costs records for orders ``ORD-<i>``.

    :param n: How many records.
    :param seed: Selects another data set.
    :param start: The number of the first record.
    """
    for i in range(start, start + n):
        rng = _rng("logistics", seed, i)
        yield {"orderId": f"ORD-{i}", "totalLogisticsCosts": _cents(rng.uniform(3.5, 12))}


def fake_transaction_costs(n: int, *, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``n`` fake transaction costs records for orders ``ORD-<i>``.

    :param n: How many records.
    :param seed: Selects another data set.
    :param start: The number of the first record.
    """
    for i in range(start, start + n):
        rng = _rng("transaction", seed, i)
        yield {"orderId": f"ORD-{i}", "transactionCosts": _cents(rng.uniform(0.2, 3.0))}


_BY_RESOURCE: dict[str, Callable[..., Iterator[dict[str, Any]]]] = {
    "orders": fake_orders,
    "refunds": fake_refunds,
    "cogs": fake_cogs,
    "logistics-costs": fake_logistics_costs,
    "transaction-costs": fake_transaction_costs,
}


def fake_records(resource: str, n: int, *, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``n`` fake records of ``resource`` (orders in the default version, 07.2025).

    :param resource: A Klar resource name such as ``orders`` or ``cogs``.
    :param n: How many records.
    :param seed: Selects another data set.
    :param start: The number of the first record.
    :raises ValueError: For an unknown resource.
    """
    try:
        factory = _BY_RESOURCE[resource]
    except KeyError:
        raise ValueError(
            f"Unknown Klar resource {resource!r}. Use one of: {', '.join(_BY_RESOURCE)}."
        ) from None
    return factory(n, seed=seed, start=start)
