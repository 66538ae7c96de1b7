"""Pydantic v2 models of every Klar object, and the local validation the operator runs before sending.

``Order`` and ``LineItem`` are the current shape (API version ``07.2025``); :func:`model_for` chooses
the model of any (resource, version), :class:`RecordValidator` checks records for one of them, and
:func:`json_schema` exports a model's JSON Schema with Klar's camelCase names.

Where Klar's documentation is silent, the models decide as follows (one place to change each):

- Required: ``Order.id``, ``LineItem.id``, ``RefundedLineItem.lineItemId``, ``Refund.id``, and for
  the cost resources ``orderId`` plus the cost itself (``productCogs``, ``totalLogisticsCosts``,
  ``transactionCosts``); COGS also need ``lineItemId`` or ``sku``. Everything else may be left out.
- Null: accepted only for ``Discount.descriptor``, ``Tax.descriptor``, ``Shipping.provinceOrState``
  and ``Shipping.providerDescriptor``; any other field is left out rather than sent as null.
- Not negative: unit values and counts (``productGmv``, ``productCogs``, ``discountAmount``,
  ``taxAmount``, ``quantity``, ``refundedQuantity``, weights) and ``taxRate`` (at most 1). Totals
  and cost totals may be negative (corrections, credits); all numbers must be finite.
- Timestamps: Unix seconds from 0 to 9999999999; ``cancelledAt`` must be > 0.
- Versions: an unknown version uses the newest known shape before it (see :func:`model_for`).
"""

from __future__ import annotations

from airflow_provider_klar.models.costs import Cogs, LogisticsCosts, Refund, TransactionCosts
from airflow_provider_klar.models.orders import (
    Customer,
    Discount,
    LineItem,
    OptionalIdentifiers,
    Order,
    RefundedLineItem,
    Shipping,
    Tax,
)
from airflow_provider_klar.models.validation import RecordValidator, ValidatedRecord, json_schema, model_for

__all__ = [
    "Cogs",
    "Customer",
    "Discount",
    "LineItem",
    "LogisticsCosts",
    "OptionalIdentifiers",
    "Order",
    "RecordValidator",
    "Refund",
    "RefundedLineItem",
    "Shipping",
    "Tax",
    "TransactionCosts",
    "ValidatedRecord",
    "json_schema",
    "model_for",
]
