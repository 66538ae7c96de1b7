"""Dicts checked by the quick looks: ``records=``, SQL, CSV and Parquet rows.

A dict without unknown keys is read in place by the quick look's structs (``msgspec.convert``) and made
a dict again, which must equal it; one with unknown keys is encoded (it must be, to be sent) and the
bytes get the quick look, which must read back the dict. Whatever the dict holds, the outcome must be
the dict checker's: the same JSON sent (numbers of the same kind), the same id, key, errors, warnings
and unknown fields. Python values that JSON cannot hold as they are (tuples, sets, ``Decimal``, ``NaN``,
``datetime``, enums, subclasses, keys that are not strings) are where both looks are lax, so they are
what these tests throw at them.
"""

from __future__ import annotations

import collections
import copy
import enum
import json
import math
import random
from datetime import datetime, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_klar.models import RecordValidator
from airflow_provider_klar.models._structs import QuickLook
from airflow_provider_klar.resources import get_resource
from airflow_provider_klar.sandbox.fake_data import fake_orders, fake_transaction_costs
from airflow_provider_klar.upload.prepare import PreparedRecord, make_preparer
from airflow_provider_klar.upload.sources import iter_records
from tests.unit._record_paths import paths_in

msgspec = pytest.importorskip("msgspec")


class DictChecker:
    """The validator as it was before dicts were checked by their encoding: ``validate`` only."""

    def __init__(self, inner: RecordValidator) -> None:
        self._inner = inner

    def validate(self, record: Any) -> Any:
        return self._inner.validate(record)


class Currency(str, enum.Enum):
    EUR = "EUR"


class Quantity(enum.IntEnum):
    TWO = 2


class Text(str):
    pass


class Number(float):
    pass


class Items(list):  # type: ignore[type-arg]
    pass


#: Python values JSON cannot hold as they are, and plain ones for contrast.
PYTHON_VALUES: list[Any] = [
    (1, 2),
    ("a",),
    {"a"},
    frozenset(),
    Decimal("1.5"),
    Decimal("NaN"),
    math.nan,
    math.inf,
    -math.inf,
    datetime(2025, 1, 2, tzinfo=timezone.utc),
    Currency.EUR,
    Quantity.TWO,
    Text("EUR"),
    Number(2.5),
    Items([1]),
    True,
    2.0,
    "2",
    2**70,
    -(2**64),
    "\ud800",
    b"EUR",
    None,
    {1: "x"},
    collections.OrderedDict(a=1),
    MappingProxyType({"a": 1}),
    [],
    {},
    "EUR",
    0,
    19.99,
]


def _damage(record: dict[str, Any], rng: random.Random, value: Any) -> dict[str, Any]:
    path = rng.choice(paths_in(record)[1:])
    parent: Any = record
    for part in path[:-1]:
        parent = parent[part]
    if rng.random() < 0.2 and isinstance(parent, dict):
        parent[rng.choice(["zzUnknown", "order_name", 7])] = value  # a key added: unknown, snake, not a str
    else:
        parent[path[-1]] = value
    return record


def _prepare_both(
    resource: str, version: str, records: list[Any], *, strict: bool = False
) -> tuple[list[Any], RecordValidator]:
    row = get_resource(resource)
    validator = RecordValidator(resource, version, strict=strict)
    by_encoding = make_preparer(validator, row.id_field, key_fields=row.key_fields)
    by_dict = make_preparer(DictChecker(validator), row.id_field, key_fields=row.key_fields)  # type: ignore[arg-type]
    pairs = []
    for src in iter_records(records):
        pairs.append((by_encoding(src), by_dict(src)))  # neither changes the record
    return pairs, validator


@pytest.fixture
def read_by_structs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many dicts the structs read (``QuickLook.of_dict``), the quicker of the two looks: ``[n]``."""
    count = [0]
    original = QuickLook.of_dict

    def of_dict(self: QuickLook, record: dict[str, Any]) -> Any:
        found = original(self, record)
        count[0] += found is not None
        return found

    monkeypatch.setattr(QuickLook, "of_dict", of_dict)
    return count


def _vouched(validator: RecordValidator) -> int:
    """How many dicts the validator's encoding route vouched for."""
    assert validator._dicts is not None
    return validator._dicts.tries - validator._dicts.misses


def _typed(value: Any) -> Any:
    """A JSON value with the type of every number kept: ``5`` and ``5.0`` differ, key order does not."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


def _assert_same(one: PreparedRecord, other: PreparedRecord, what: Any) -> None:
    # The same JSON, numbers of the same kind (a dict read by the structs is sent in the models' order).
    if one.encoded is None or other.encoded is None:
        assert one.encoded is other.encoded is None, what
    else:
        assert _typed(json.loads(one.encoded)) == _typed(json.loads(other.encoded)), what
    assert (one.id, one.key) == (other.id, other.key), what
    assert one.errors == other.errors, what
    assert one.warnings == other.warnings, what
    assert one.unknown_fields == other.unknown_fields, what


@pytest.mark.parametrize("version", ["07.2025", "12.2022"])
@pytest.mark.parametrize("strict", [False, True])
def test_each_python_value_anywhere_in_an_order_prepares_as_the_dict_checker_does(
    version: str, strict: bool, read_by_structs: list[int]
) -> None:
    rng = random.Random(7)
    records: list[Any] = []
    for n, order in enumerate(fake_orders(4 * len(PYTHON_VALUES), seed=7, version=version)):
        records.append(_damage(order, rng, PYTHON_VALUES[n % len(PYTHON_VALUES)]))
    pitfall = next(fake_orders(1, seed=8, version=version, start=900))
    pitfall["lineItems"][0]["totalAmountAfterTaxesAndDiscounts"] += 50
    records += [*fake_orders(20, seed=9, version=version, start=1000), pitfall]
    pairs, validator = _prepare_both("orders", version, records, strict=strict)
    for (one, other), record in zip(pairs, records, strict=True):
        _assert_same(one, other, record)
    # Every way was taken: records read by the structs, vouched for by their encoding (an unknown key
    # with a plain value), and left to the dict checker.
    assert _vouched(validator) >= 25
    assert 20 <= read_by_structs[0] <= _vouched(validator) - 3
    assert validator._dicts is not None
    assert validator._dicts.misses >= 40
    # The mix holds both kinds: records sent and records refused, with and without a warning.
    assert sum(one.encoded is not None for one, _ in pairs) >= 30
    assert sum(one.encoded is None for one, _ in pairs) >= 20
    assert any(one.warnings or (strict and one.errors and "ORD" in str(one.errors)) for one, _ in pairs)


def test_a_plain_order_is_vouched_for_and_a_python_value_is_not() -> None:
    validator = RecordValidator("orders", "07.2025")
    order = next(fake_orders(1, seed=1))
    vouched = validator.validate_encoded(order)
    assert vouched is not None
    data, (record, record_id, errors, warnings, unknown) = vouched
    # Read by the structs (no unknown keys): a dict equal to the order, sent as the dict checker sends it.
    assert record == order
    assert record is not order
    assert _typed(json.loads(data)) == _typed(json.loads(msgspec.json.encode(order)))
    assert (record_id, errors, warnings, unknown) == (order["id"], (), (), ())
    for value in [(1,), {"x"}, Decimal("0.1"), math.nan, datetime(2025, 1, 2, tzinfo=timezone.utc)]:
        changed = copy.deepcopy(order)
        changed["lineItems"][0]["productGmv"] = value
        assert validator.validate_encoded(changed) is None, value
    # A Decimal equal to its float is sent as that number, as the models dump it.
    changed = copy.deepcopy(order)
    changed["lineItems"][0]["productGmv"] = Decimal("2.5")
    vouched = validator.validate_encoded(changed)
    assert vouched is not None
    assert json.loads(vouched[0])["lineItems"][0]["productGmv"] == 2.5
    assert validator.validate(changed).record == vouched[1][0]
    with_unknown = copy.deepcopy(order)
    with_unknown["note"] = "gift"
    with_unknown["lineItems"][0]["magentoItemId"] = 7
    vouched = validator.validate_encoded(with_unknown)
    assert vouched is not None
    assert (
        vouched[1][4]
        == validator.validate(with_unknown).unknown_fields
        == ("lineItems.0.magentoItemId", "note")
    )
    with_unknown["lineItems"][0]["magentoItemId"] = (7,)  # a tuple in an unknown field too
    assert validator.validate_encoded(with_unknown) is None
    snake = copy.deepcopy(order)
    snake["order_name"] = snake.pop("orderName")  # sent renamed: not vouched for as it is
    assert validator.validate_encoded(snake) is None


def test_orders_with_unknown_fields_prepare_as_the_dict_checker_does() -> None:
    records: list[Any] = []
    for n, order in enumerate(fake_orders(60, seed=4)):
        if n % 2:
            order["storeId"] = n
        if n % 3:
            order["lineItems"][-1]["magentoItemId"] = {"n": [n, None, "x"]}
        if n % 5 == 0:
            order["lineItems"][0]["extra"] = (n,)  # not JSON as it is: the dict checker's
        records.append(order)
    pairs, validator = _prepare_both("orders", "07.2025", records)
    for (one, other), record in zip(pairs, records, strict=True):
        _assert_same(one, other, record)
    assert sum(bool(one.unknown_fields) for one, _ in pairs) >= 40
    assert _vouched(validator) >= 40


def test_transaction_costs_rows_prepare_as_the_dict_checker_does(read_by_structs: list[int]) -> None:
    rng = random.Random(3)
    records: list[Any] = []
    for n, costs in enumerate(fake_transaction_costs(3 * len(PYTHON_VALUES), seed=3)):
        records.append(_damage(costs, rng, PYTHON_VALUES[n % len(PYTHON_VALUES)]) if n % 2 else costs)
    pairs, validator = _prepare_both("transaction-costs", "06.2024", records)
    assert _vouched(validator) >= len(records) // 2
    assert read_by_structs[0] >= len(records) // 2
    for (one, other), record in zip(pairs, records, strict=True):
        _assert_same(one, other, record)
    assert sum(one.encoded is not None for one, _ in pairs) >= len(records) // 2


def test_the_check_stops_asking_the_quick_look_when_it_refuses_most_dicts() -> None:
    validator = RecordValidator("orders", "07.2025")
    order = next(fake_orders(1, seed=2))
    order["lineItems"] = tuple(order["lineItems"])  # every record holds a tuple: never vouched for
    for _ in range(1000):
        assert validator.validate_encoded(order) is None
    assert validator._dicts is not None
    assert validator.validate_encoded(order) is None
    assert validator._dicts is None
    order["lineItems"] = list(order["lineItems"])
    assert validator.validate_encoded(order) is None  # no longer asked
    assert validator.validate(order).valid


python_values = st.recursive(
    st.sampled_from(PYTHON_VALUES)
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.decimals(allow_nan=True)
    | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children)
        | st.frozensets(st.integers(), max_size=2)
        | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=3)
    ),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    values=st.lists(python_values, min_size=1, max_size=3),
    version=st.sampled_from(["07.2025", "12.2022"]),
)
def test_damaged_orders_prepare_as_the_dict_checker_does(seed: int, values: list[Any], version: str) -> None:
    rng = random.Random(seed)
    record = next(fake_orders(1, seed=seed, version=version, start=seed))
    for value in values:
        record = _damage(record, rng, value)
    [(one, other)], _ = _prepare_both("orders", version, [record])
    _assert_same(one, other, record)
