"""Pydantic v2 models of every Klar object, and the local validation the operator runs before sending.

``Order`` and ``LineItem`` are the current shape (API version ``07.2025``); :func:`model_for` chooses
the model of any (resource, version), :class:`RecordValidator` checks records for one of them, and
:func:`json_schema` exports a model's JSON Schema with Klar's camelCase names.
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
