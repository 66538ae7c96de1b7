"""Fake data: valid, pitfall-free, deterministic, about 2 KB an order, a realistic mix."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from itertools import islice

import pytest

from airflow_provider_klar.models import RecordValidator
from airflow_provider_klar.resources import RESOURCES
from airflow_provider_klar.sandbox.fake_data import (
    fake_cogs,
    fake_logistics_costs,
    fake_orders,
    fake_records,
    fake_refunds,
    fake_transaction_costs,
)


@pytest.mark.parametrize("version", ["07.2025", "12.2022"])
def test_fake_orders_are_valid_and_raise_no_pitfall_even_when_strict(version: str) -> None:
    validator = RecordValidator("orders", version, strict=True)
    for order in fake_orders(400, version=version, seed=3):
        result = validator.validate(order)
        assert result.errors == (), order["id"]
        assert result.warnings == (), order["id"]
        assert result.unknown_fields == (), order["id"]
        assert result.record is order


@pytest.mark.parametrize("resource", sorted(RESOURCES))
def test_fake_records_of_every_resource_are_valid(resource: str) -> None:
    validator = RecordValidator(resource, RESOURCES[resource].default_version, strict=True)
    records = list(fake_records(resource, 100, seed=1))
    assert len(records) == 100
    for record in records:
        result = validator.validate(record)
        assert result.valid, result
        assert not result.warnings, result
        assert not result.unknown_fields, result


def test_ids_follow_the_documented_pattern_and_start() -> None:
    assert [o["id"] for o in fake_orders(3, start=10)] == ["ORD-10", "ORD-11", "ORD-12"]
    assert [r["id"] for r in fake_refunds(2, start=5)] == ["REF-5", "REF-6"]
    assert [r["orderId"] for r in fake_cogs(2)] == ["ORD-0", "ORD-1"]
    assert [r["orderId"] for r in fake_logistics_costs(1, start=7)] == ["ORD-7"]
    assert [r["orderId"] for r in fake_transaction_costs(1, start=8)] == ["ORD-8"]


def test_cost_records_refer_to_the_fake_orders_line_items() -> None:
    orders = list(fake_orders(20))
    for order, cogs, refund in zip(orders, fake_cogs(20), fake_refunds(20), strict=True):
        line_ids = {item["id"] for item in order["lineItems"]}
        assert cogs["orderId"] == order["id"]
        assert cogs["lineItemId"] in line_ids
        assert refund["lineItems"][0]["lineItemId"] in line_ids


def test_deterministic_by_seed_and_independent_of_batching() -> None:
    assert list(fake_orders(50, seed=7)) == list(fake_orders(50, seed=7))
    assert list(fake_orders(50, seed=7)) != list(fake_orders(50, seed=8))
    assert list(fake_orders(5, seed=7, start=45)) == list(fake_orders(50, seed=7))[45:]
    assert list(fake_records("cogs", 5, seed=2, start=3)) == list(fake_cogs(8, seed=2))[3:]


def test_orders_are_about_two_kilobytes_with_a_realistic_mix() -> None:
    orders = list(fake_orders(1000))
    sizes = [len(json.dumps(o).encode()) for o in orders]
    assert 1800 <= statistics.mean(sizes) <= 3500
    line_counts = Counter(len(o["lineItems"]) for o in orders)
    assert set(line_counts) == {1, 2, 3, 4, 5}
    with_bundles = sum(any("bundledProducts" in item for item in o["lineItems"]) for o in orders)
    with_refunds = sum(bool(o["refundedLineItems"]) for o in orders)
    with_discounts = sum(any(item["discounts"] for item in o["lineItems"]) for o in orders)
    cancelled = [o for o in orders if o["financialStatus"] == "cancelled"]
    assert 30 <= with_bundles <= 300
    assert 50 <= with_refunds <= 300
    assert with_discounts >= 200
    assert cancelled
    assert all(o["cancelledAt"] > 0 for o in cancelled)
    assert all(
        o["closedAt"] == 0 and "cancelledAt" not in o for o in orders if o["financialStatus"] != "cancelled"
    )


def test_legacy_orders_have_no_bundles() -> None:
    assert not any(
        "bundledProducts" in item for o in fake_orders(500, version="12.2022") for item in o["lineItems"]
    )


def test_fake_orders_are_lazy() -> None:
    assert len(list(islice(fake_orders(10**9), 3))) == 3


def test_unknown_resource() -> None:
    with pytest.raises(ValueError, match="Unknown Klar resource 'invoices'"):
        fake_records("invoices", 1)
