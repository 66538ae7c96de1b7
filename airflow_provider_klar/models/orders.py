"""Orders and their parts: line items, discounts, taxes, shipping, customer, identifiers, refunded items.

``Order`` and ``LineItem`` are the current shape (API version ``07.2025``, with ``bundledProducts``);
``Order_12_2022`` and ``LineItem_12_2022`` are the legacy shape, where ``bundledProducts`` is an error
that names the version to use.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from pydantic import Field
from pydantic.functional_validators import PlainValidator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from airflow_provider_klar.models._base import (
    E_VERSION,
    CancelledAt,
    Country2,
    Country3,
    Currency,
    KlarModel,
    Money,
    NonNegative,
    Omittable,
    TaxRate,
    Timestamp,
)


class Discount(KlarModel):
    """A discount: per unit on a line item, an order total on shipping."""

    title: Omittable[str] = Field(None, description="Name of the discount, e.g. 'Summer sale'.")
    descriptor: str | None = Field(None, description="Free-text description of the discount; may be null.")
    target: Omittable[str] = Field(
        None, description="Deprecated: what the discount applies to. Kept for old clients."
    )
    voucher_code: Omittable[str] = Field(None, description="The voucher code the customer entered, if any.")
    voucher_type: Omittable[str] = Field(
        None, description="The kind of voucher, e.g. 'percentage' or 'fixed_amount'."
    )
    is_voucher: Omittable[bool] = Field(None, description="Whether the discount came from a voucher code.")
    discount_amount: Omittable[NonNegative] = Field(
        None,
        description="Gross amount of the discount: per single unit on a line item (not the line total), "
        "the order total on shipping. Not negative.",
    )


class Tax(KlarModel):
    """A tax: per unit on a line item (computed after discounts), an order total on shipping."""

    title: Omittable[str] = Field(None, description="Name of the tax, e.g. 'VAT 19%'.")
    descriptor: str | None = Field(None, description="Free-text description of the tax; may be null.")
    tax_rate: Omittable[TaxRate] = Field(
        None, description="The tax rate as a fraction between 0 and 1: 0.19 for 19 %, not 19 and not '19%'."
    )
    tax_amount: Omittable[NonNegative] = Field(
        None,
        description="Amount of the tax: per single unit on a line item, computed after discounts (not the "
        "line total); the order total on shipping. Not negative.",
    )


class Shipping(KlarModel):
    """Where and how an order was shipped, and what shipping cost (order totals)."""

    city: Omittable[str] = Field(None, description="City of the shipping address.")
    province_or_state: str | None = Field(
        None, description="Province or state of the shipping address; may be null."
    )
    country_code_iso3_letter: Omittable[Country3] = Field(
        None, description="ISO 3166-1 alpha-3 country code of the shipping address, e.g. 'DEU'."
    )
    country_code_iso2_letter: Omittable[Country2] = Field(
        None, description="ISO 3166-1 alpha-2 country code of the shipping address, e.g. 'DE'."
    )
    currency_code_iso3_letter: Omittable[Currency] = Field(
        None, description="ISO 4217 code of the currency of the shipping amounts, e.g. 'EUR'."
    )
    zip_or_postal_code: Omittable[str] = Field(
        None, description="Zip or postal code of the shipping address."
    )
    provider_descriptor: str | None = Field(
        None, description="The shipping provider or method, e.g. 'DHL Express'; may be null."
    )
    shipping_total_amount_before_tax_and_discounts: Omittable[Money] = Field(
        None, description="Shipping charged to the customer before taxes and discounts (order total)."
    )
    shipping_total_amount_after_tax_and_discounts: Omittable[Money] = Field(
        None, description="Shipping charged to the customer after taxes and discounts (order total)."
    )
    total_logistics_costs: Omittable[Money] = Field(
        None, description="What shipping this order cost the shop (order total, excluding tax)."
    )
    discounts: Omittable[list[Discount]] = Field(None, description="Discounts on shipping (order totals).")
    taxes: Omittable[list[Tax]] = Field(None, description="Taxes on shipping (order totals).")


class Customer(KlarModel):
    """The customer who placed an order."""

    id: Omittable[str] = Field(
        None, description="The customer's id in the shop; for guests, the MD5 hex digest of the e-mail."
    )
    email: Omittable[str] = Field(
        None, description="The customer's e-mail address, or a placeholder for shops that send only a hash."
    )
    email_hash: Omittable[str] = Field(
        None,
        description="Hex SHA-1 of the salt issued by Klar followed by the trimmed, lower-cased e-mail.",
    )
    is_newsletter_subscriber_at_time_of_checkout: Omittable[bool] = Field(
        None, description="Whether the customer subscribed to the newsletter when checking out."
    )
    tags: Omittable[list[str]] = Field(None, description="Tags of the customer, e.g. ['vip'].")


class OptionalIdentifiers(KlarModel):
    """Identifiers that link an order to marketing data (pixel, UTM parameters, channels, subscriptions)."""

    google_analytics_transaction_id: Omittable[str] = Field(
        None,
        description="The pixel's order id, when it differs from the order's id, orderNumber and orderName.",
    )
    google_analytics_transaction_i_d: Omittable[str] = Field(
        None,
        alias="googleAnalyticsTransactionID",
        description="The same as googleAnalyticsTransactionId, in the spelling of Klar's help pages "
        "(which one Klar's schema uses is unconfirmed; send one of them).",
    )
    order_source_name: Omittable[str] = Field(
        None, description="Where the order came from, e.g. 'web' or 'pos'."
    )
    order_channel_name: Omittable[str] = Field(None, description="The sales channel, e.g. 'online_store'.")
    order_platform_name: Omittable[str] = Field(None, description="The shop platform, e.g. 'magento'.")
    utm_source: Omittable[str] = Field(None, description="utm_source of the session that placed the order.")
    utm_medium: Omittable[str] = Field(None, description="utm_medium of the session that placed the order.")
    utm_campaign: Omittable[str] = Field(
        None, description="utm_campaign of the session that placed the order."
    )
    utm_term: Omittable[str] = Field(None, description="utm_term of the session that placed the order.")
    utm_content: Omittable[str] = Field(None, description="utm_content of the session that placed the order.")
    landing_page: Omittable[str] = Field(None, description="The URL of the page the session landed on.")
    is_subscription_order: Omittable[bool] = Field(
        None, description="Whether the order belongs to a subscription."
    )
    is_first_subscription_order: Omittable[bool] = Field(
        None, description="Whether the order is the first order of a subscription."
    )


class RefundedLineItem(KlarModel):
    """Units of one line item that were refunded (in an order's refundedLineItems or a Refund)."""

    id: Omittable[str] = Field(
        None, description="Unique id of the refunded line (e.g. the credit memo item id)."
    )
    line_item_id: str = Field(
        description="The id of the refunded LineItem of the order (required; must equal a LineItem id)."
    )
    reason_descriptor: Omittable[str] = Field(None, description="Why the units were refunded.")
    refunded_quantity: Omittable[NonNegative] = Field(
        None, description="How many units were refunded. Not negative."
    )
    refund_quantity: Omittable[str] = Field(
        None, description="Deprecated: the refunded quantity as a string. Send refundedQuantity instead."
    )
    created_at: Omittable[Timestamp] = Field(
        None, description="Unix timestamp in seconds when the refund was created."
    )
    processed_at: Omittable[Timestamp] = Field(
        None, description="Unix timestamp in seconds when the refund was processed."
    )


class _LineItemBase(KlarModel):
    """The fields a line item has in every API version."""

    id: str = Field(description="Unique id of the line item within the order (required, a string).")
    product_name: Omittable[str] = Field(None, description="Name of the product.")
    product_id: Omittable[str] = Field(None, description="Id of the product in the shop.")
    product_variant_name: Omittable[str] = Field(
        None, description="Name of the product variant, e.g. 'Blue / M'."
    )
    product_variant_id: Omittable[str] = Field(None, description="Id of the product variant in the shop.")
    product_brand: Omittable[str] = Field(None, description="Brand of the product.")
    product_collection: Omittable[str] = Field(None, description="Collection or category of the product.")
    sku: Omittable[str] = Field(None, description="Stock keeping unit of the product variant.")
    product_cogs: Omittable[NonNegative] = Field(
        None, description="Cost of goods sold of one unit, excluding tax. Not negative."
    )
    product_gmv: Omittable[NonNegative] = Field(
        None, description="Gross price of one unit, before taxes and discounts are taken off. Not negative."
    )
    product_shipping_weight_in_grams: Omittable[NonNegative] = Field(
        None, description="Shipping weight of one unit in grams. Not negative."
    )
    quantity: Omittable[NonNegative] = Field(None, description="How many units were ordered. Not negative.")
    product_tags: Omittable[list[str]] = Field(None, description="Tags of the product.")
    discounts: Omittable[list[Discount]] = Field(
        None, description="Discounts on the line, each per single unit."
    )
    taxes: Omittable[list[Tax]] = Field(
        None, description="Taxes on the line, each per single unit, after discounts."
    )
    total_amount_before_taxes_and_discounts: Omittable[Money] = Field(
        None,
        description="Line total before taxes and discounts: productGmv x quantity. A checksum only; "
        "Klar computes from the unit values.",
    )
    total_amount_after_taxes_and_discounts: Omittable[Money] = Field(
        None,
        description="Line total after taxes and discounts: the gross total minus quantity x (sum of "
        "discounts + sum of taxes). A checksum only.",
    )
    total_logistics_costs: Omittable[Money] = Field(
        None, description="Logistics costs of the line (line total)."
    )


def _bundles_need_07_2025(value: Any) -> NoReturn:
    raise PydanticCustomError(E_VERSION, "bundledProducts needs API version 07.2025 or later")


class LineItem_12_2022(_LineItemBase):
    """A line item of API version 12.2022 (no bundles)."""

    bundled_products: SkipJsonSchema[Annotated[Any, PlainValidator(_bundles_need_07_2025)]] = Field(
        None, description="Not part of 12.2022: send bundles with API version 07.2025."
    )


class LineItem(_LineItemBase):
    """A line item of API version 07.2025: one product variant of an order, possibly a bundle."""

    bundled_products: Omittable[list[LineItem]] = Field(
        None,
        description="The constituents of a bundle (API version 07.2025 and later). Klar then ignores "
        "the parent's money fields and sums the constituents' values bottom-up.",
    )


class _OrderBase(KlarModel):
    """The fields an order has in every API version."""

    id: str = Field(
        description="Unique technical id of the order (required, a string). Sending it again overwrites."
    )
    created_at: Omittable[Timestamp] = Field(
        None, description="Unix timestamp in seconds when the order was placed."
    )
    updated_at: Omittable[Timestamp] = Field(
        None, description="Unix timestamp in seconds when the order last changed in the shop."
    )
    processed_at: Omittable[Timestamp] = Field(
        None, description="Unix timestamp in seconds when the order was fulfilled."
    )
    closed_at: Omittable[Timestamp] = Field(
        None, description="Unix timestamp in seconds when the order was closed; 0 is accepted."
    )
    cancelled_at: Omittable[CancelledAt] = Field(
        None,
        description="Unix timestamp in seconds when the order was cancelled; must be > 0, so leave the "
        "field out for orders that are not cancelled.",
    )
    currency_code_iso3_letter: Omittable[Currency] = Field(
        None, description="ISO 4217 code of the currency the order was processed in, e.g. 'EUR'."
    )
    financial_status: Omittable[str] = Field(
        None,
        description="Payment status, free text mapped in Klar: 'pending', 'paid', 'partially_paid', "
        "'refunded', 'partially_refunded', 'cancelled' ('cancelled' removes it from processing).",
    )
    shipment_status: Omittable[str] = Field(
        None,
        description="Shipping status, free text mapped in Klar: 'shipped', 'not_shipped', "
        "'partially_shipped', 'pending'.",
    )
    payment_gateway_name: Omittable[str] = Field(
        None, description="The payment gateway, e.g. 'paypal' or 'stripe'."
    )
    payment_method_name: Omittable[str] = Field(
        None, description="The payment method, e.g. 'credit_card' or 'invoice'."
    )
    order_name: Omittable[str] = Field(
        None, description="Customer-facing name of the order, e.g. 'Order #1234'."
    )
    order_number: Omittable[str] = Field(
        None, description="The order number in the shop, e.g. 'O-4234234-A'."
    )
    tags: Omittable[list[str]] = Field(
        None, description="Tags of the order, e.g. ['subscription', 'first_order']."
    )
    refunded_line_items: Omittable[list[RefundedLineItem]] = Field(
        None, description="Refunded units of the order's line items; [] when nothing was refunded."
    )
    shipping: Omittable[Shipping] = Field(None, description="Shipping address, provider, amounts and costs.")
    transaction_costs: Omittable[Money] = Field(
        None, description="Payment and transaction costs of the order (order total)."
    )
    customer: Omittable[Customer] = Field(None, description="The customer who placed the order.")
    optional_identifiers: Omittable[OptionalIdentifiers] = Field(
        None, description="Identifiers linking the order to marketing data (UTM, channels, pixel id)."
    )


class Order_12_2022(_OrderBase):
    """An order of API version 12.2022 (line items without bundles)."""

    line_items: Omittable[list[LineItem_12_2022]] = Field(None, description="The products of the order.")


class Order(_OrderBase):
    """An order of API version 07.2025, the current shape (line items may be bundles)."""

    line_items: Omittable[list[LineItem]] = Field(
        None, description="The products of the order; a line item may bundle others (bundledProducts)."
    )
