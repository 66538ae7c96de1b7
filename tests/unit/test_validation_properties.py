"""Property-based tests: generated valid records round-trip; generated type errors name their path."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_klar.models import Order, RecordValidator
from airflow_provider_klar.sandbox.fake_data import fake_order

VALIDATOR = RecordValidator("orders", "07.2025")
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(max_size=12)
money = st.one_of(st.integers(0, 10_000), st.floats(0, 10_000, allow_nan=False))
timestamp = st.one_of(st.integers(0, 9_999_999_999), st.floats(0, 9_999_999_999, allow_nan=False))
tax = st.fixed_dictionaries(
    {},
    optional={
        "title": text,
        "descriptor": st.none() | text,
        "taxRate": st.floats(0, 1) | st.sampled_from([0, 1]),
        "taxAmount": money,
    },
)
discount = st.fixed_dictionaries(
    {},
    optional={
        "title": text,
        "descriptor": st.none() | text,
        "isVoucher": st.booleans(),
        "discountAmount": money,
    },
)
line_item = st.fixed_dictionaries(
    {"id": text},
    optional={
        "sku": text,
        "quantity": st.integers(0, 50),
        "productGmv": money,
        "taxes": st.lists(tax, max_size=2),
        "discounts": st.lists(discount, max_size=2),
        "totalAmountAfterTaxesAndDiscounts": st.floats(-1e6, 1e6),
        "productTags": st.lists(text, max_size=2),
    },
)
unknown_key = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=8).map(lambda s: "zz" + s)
order = st.fixed_dictionaries(
    {"id": text},
    optional={
        "createdAt": timestamp,
        "closedAt": timestamp,
        "cancelledAt": st.integers(1, 9_999_999_999),
        "currencyCodeIso3Letter": st.sampled_from(["EUR", "USD", "CHF", "GBP"]),
        "lineItems": st.lists(line_item, max_size=3),
        "refundedLineItems": st.just([]),
        "tags": st.lists(text, max_size=3),
        "shipping": st.fixed_dictionaries(
            {},
            optional={
                "provinceOrState": st.none() | text,
                "countryCodeIso2Letter": st.sampled_from(["DE", "AT"]),
            },
        ),
    },
)


@SETTINGS
@given(order, st.dictionaries(unknown_key, st.none() | st.integers() | text, max_size=2))
def test_generated_valid_orders_validate_and_round_trip(
    record: dict[str, Any], extra: dict[str, Any]
) -> None:
    record = {**record, **extra}
    result = VALIDATOR.validate(record)
    assert result.errors == ()
    assert result.record is record
    assert sorted(result.unknown_fields) == sorted(extra)
    dumped = Order.model_validate(record).model_dump(mode="json", exclude_unset=True)
    assert json.dumps(dumped, sort_keys=True) == json.dumps(record, sort_keys=True)


def _number_paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _number_paths(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _number_paths(v, f"{prefix}{i}.")]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [prefix[:-1]]
    return []


def _set(record: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        record = record[int(part)] if isinstance(record, list) else record[part]
    if isinstance(record, list):
        record[int(last)] = value
    else:
        record[last] = value


@SETTINGS
@given(st.integers(0, 500), st.data(), st.sampled_from(["12.5", True, None, [], "n/a"]))
def test_a_number_replaced_by_a_wrong_type_is_rejected_at_its_path(n: int, data: Any, wrong: Any) -> None:
    record = copy.deepcopy(fake_order(n))
    path = data.draw(st.sampled_from(_number_paths(record)))
    _set(record, path, wrong)
    result = VALIDATOR.validate(record)
    assert [e.path for e in result.errors] == [path]
    assert result.errors[0].value == wrong
    assert result.id == f"ORD-{n}"


@SETTINGS
@given(st.integers(0, 500), st.integers(1000, 10**6))
def test_an_id_replaced_by_a_number_is_rejected(n: int, number: int) -> None:
    record = copy.deepcopy(fake_order(n))
    record["lineItems"][0]["id"] = number
    result = VALIDATOR.validate(record)
    assert [(e.path, e.value) for e in result.errors] == [("lineItems.0.id", number)]


@SETTINGS
@given(st.one_of(st.integers(10**12, 10**15 - 1), st.floats(1e12, 1e15, exclude_max=True)))
def test_every_millisecond_timestamp_gets_the_millisecond_hint(value: float) -> None:
    (error,) = VALIDATOR.validate({"id": "1", "updatedAt": value}).errors
    assert error.path == "updatedAt"
    assert "looks like milliseconds" in error.message
    assert f"({int(value // 1000)})" in error.message


@SETTINGS
@given(st.one_of(st.integers(2, 100), st.floats(1, 100, exclude_min=True)))
def test_every_percentage_tax_rate_gets_the_fraction_hint(rate: float) -> None:
    (error,) = VALIDATOR.validate({"id": "1", "shipping": {"taxes": [{"taxRate": rate}]}}).errors
    assert error.path == "shipping.taxes.0.taxRate"
    assert error.message.endswith(f"looks like a percentage, send {round(rate / 100, 6)!r}")
