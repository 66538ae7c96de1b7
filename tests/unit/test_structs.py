"""The msgspec mirror of the JSON checker never vouches for a record the JSON checker refuses.

The mirror (``models/_structs.py``) is a quicker first look at a line's bytes. Whatever it takes must be
taken by the JSON checker too, with the same values; it may refuse more (the JSON checker then decides).
These tests hold the two side by side: on edge cases of every value kind, and on random damage done to
realistic orders.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from airflow_provider_klar.models import RecordValidator, _structs
from airflow_provider_klar.models._checkers import json_checker
from airflow_provider_klar.models.validation import MODELS
from airflow_provider_klar.sandbox.fake_data import fake_order, fake_orders, fake_transaction_costs
from tests.unit._record_paths import paths_in

pytest.importorskip("msgspec")

MIRRORED = [(r, v) for r, shapes in MODELS.items() for v, m in shapes.items() if _structs.struct_checker(m)]


def _checker_says(model: type, line: bytes) -> dict[str, Any] | None:
    try:
        out: dict[str, Any] = json_checker(model).validate_json(line)
    except ValidationError:
        return None
    return out


#: A validator per model without the quick look: what the JSON checker's path says.
_PLAIN: dict[type, RecordValidator] = {}


def _plain(model: type) -> RecordValidator:
    if model not in _PLAIN:
        version = next(v for shapes in MODELS.values() for v, m in shapes.items() if m is model)
        resource = next(r for r, shapes in MODELS.items() if model in shapes.values())
        _PLAIN[model] = validator = RecordValidator(resource, version)
        validator._quick = None
    return _PLAIN[model]


def _floats(value: Any) -> Any:
    """``value`` with every int (not bool) made a float, for comparing numbers read either way."""
    return json.loads(json.dumps(value), parse_int=float)


def assert_never_laxer(model: type, line: bytes) -> dict[str, Any] | None:
    """Assert the mirror takes ``line`` only if the JSON checker does, with equal values; return its dict.

    Also for its look at records with unknown keys: what it takes, the checker's path takes with the same
    dict and the same unknown keys, in the same order.
    """
    quick = _structs.struct_checker(model)
    assert quick is not None
    mirrored = quick(line)
    if mirrored is not None:
        checked = _checker_says(model, line)
        assert checked is not None, f"the mirror took a line the JSON checker refuses: {line[:300]!r}"
        assert mirrored == checked
        assert json.dumps(mirrored, sort_keys=True) == json.dumps(checked, sort_keys=True)
    both = quick.with_unknown(line)
    if both is not None:
        slow = _plain(model).validate_json_fields(line)
        snake = any(path.rpartition(".")[2] in _plain(model)._snake for path in both[1])
        assert slow is not None or snake, f"the mirror took a line the checker's path refuses: {line[:300]!r}"
        if slow is not None:
            assert both[1] == slow[4]
            if both[1]:  # both read the record with from_json then: the same dict, types and key order
                assert json.dumps(both[0]) == json.dumps(slow[0])
            else:  # the checker's dict reads whole numbers of number fields as floats
                assert _floats(both[0]) == _floats(slow[0])
        if mirrored is not None:
            assert both[1] == ()
        if slow is not None:
            # Once its unknown keys are learned, the quicker look says the same (or leaves it alone).
            quick.learn(both[2])
            learned = quick.with_learned(line)
            if learned is not None:
                assert learned[1] == slow[4]
                assert _floats(learned[0]) == _floats(slow[0])
    learned = quick.with_learned(line)
    if learned is not None:
        slow = _plain(model).validate_json_fields(line)
        assert slow is not None, f"the learned look took a line the checker's path refuses: {line[:300]!r}"
        assert learned[1] == slow[4]
        assert _floats(learned[0]) == _floats(slow[0])
    return mirrored


def test_the_mirror_covers_the_current_shapes_and_refuses_what_it_cannot_copy() -> None:
    # cogs carry a model-level Python validator (lineItemId or sku): no mirror, the JSON checker does
    # it all. In orders of 12.2022 only the key bundledProducts has one (an error there): the mirror
    # leaves the key out, so an order that sends it goes to the checker.
    assert ("orders", "07.2025") in MIRRORED
    assert ("orders", "12.2022") in MIRRORED
    assert ("transaction-costs", "06.2024") in MIRRORED
    assert ("cogs", "12.2022") not in MIRRORED


def test_a_key_only_python_checks_is_left_to_the_checker() -> None:
    legacy = MODELS["orders"]["12.2022"]
    bundled = b'{"id":"A","lineItems":[{"id":"x","bundledProducts":[]}]}'
    assert _structs.struct_checker(legacy)(bundled) is None  # type: ignore[misc]
    assert _checker_says(legacy, bundled) is None  # "bundledProducts needs API version 07.2025"
    plain = json.dumps(next(fake_orders(1, seed=4, version="12.2022"))).encode()
    assert assert_never_laxer(legacy, plain) is not None
    validator = RecordValidator("orders", "12.2022")
    assert validator._quick is not None
    assert validator.validate_json(bundled) is None


ORDER = MODELS["orders"]["07.2025"]
COSTS = MODELS["transaction-costs"]["06.2024"]

# (line, whether the JSON checker takes it): the mirror must refuse every line of the second kind.
EDGES = [
    (b'{"id":"A","transactionCosts":1e400}', False),
    (b'{"id":"A","transactionCosts":-1e400}', False),
    (b'{"id":"A","transactionCosts":1.8e308}', False),
    (b'{"id":"A","transactionCosts":123456789012345678901234567890}', True),
    (b'{"id":"A","transactionCosts":18446744073709551616}', True),
    (b'{"id":"A","transactionCosts":-0}', True),
    (b'{"id":"A","transactionCosts":1.0e-400}', True),
    (b'{"id":"A","transactionCosts":5}', True),
    (b'{"id":"A","transactionCosts":NaN}', False),
    (b'{"id":"A","transactionCosts":Infinity}', False),
    (b'{"id":"A","transactionCosts":true}', False),
    (b'{"id":"A","transactionCosts":"5"}', False),
    (b'{"id":"A","transactionCosts":null}', False),
    (b'{"id":"A","transactionCosts":01}', False),
    (b'{"id":"A","shipping":{"countryCodeIso2Letter":"DE"}}', True),
    # Python's "$" matches before a final newline; the models' does not.
    (b'{"id":"A","shipping":{"countryCodeIso2Letter":"DE\\n"}}', False),
    (b'{"id":"A","shipping":{"countryCodeIso3Letter":"DEU\\n"}}', False),
    (b'{"id":"A","shipping":{"countryCodeIso2Letter":"de"}}', False),
    (b'{"id":"A","currencyCodeIso3Letter":"EUR\\n"}', False),
    (b'{"id":"A","currencyCodeIso3Letter":"XYZ"}', False),
    (b'{"id":"\\ud800"}', False),
    (b'{"id":"\\udc00x"}', False),
    (b'{"id":"\\ud83d\\ude00"}', True),
    (b'{"id":"\xff"}', False),
    (b'{"id":"\xed\xa0\x80"}', False),
    (b'{"id":"a\tb"}', False),
    (b'{"id":"\\u0000"}', True),
    (b'{"id":5,"id":"A"}', True),  # the checker keeps the last value; the mirror refuses: allowed
    (b'{"id":"A","id":5}', False),
    (b'{"id":"A","closedAt":null}', False),
    (b'{"id":"A","cancelledAt":0}', False),
    (b'{"id":"A","cancelledAt":10000000000}', False),
    (b'{"id":"A","shipping":{"provinceOrState":null}}', True),
    (b'{"id":"A","customer":{"email":null}}', False),
    (b'{"id":"A"} x', False),
    (b' {"id":"A"} \n', True),
    (b'\xef\xbb\xbf{"id":"A"}', False),
    (b'{"id":"A","lineItems":[{"id":"x","taxes":[{"taxRate":1.00000000000001}]}]}', False),
    (b'{"id":"A","lineItems":[{"id":"x","unknownX":1}]}', False),
    (b'{"id":"A","line_items":[]}', False),
    (b'{"id":"A","tags":null}', False),
    (b'{"\\u0069d":"B"}', True),
    (b"[]", False),
    (b'"x"', False),
    (b"", False),
]


@pytest.mark.parametrize(("line", "checker_takes"), EDGES)
def test_edge_cases(line: bytes, checker_takes: bool) -> None:
    assert (_checker_says(ORDER, line) is not None) == checker_takes
    assert_never_laxer(ORDER, line)


def _nested(levels: int) -> bytes:
    inner = b'{"id":"z"}'
    for level in range(levels):
        inner = b'{"id":"b%d","bundledProducts":[%s]}' % (level, inner)
    return b'{"id":"A","lineItems":[' + inner + b"]}"


@pytest.mark.parametrize("levels", [1, 10, 38, 39, 40, 41, 50, 98, 99, 100, 400, 1000, 5000])
def test_bundles_nested_deeper_than_the_checker_reads_are_left_to_it(levels: int) -> None:
    # msgspec reads far deeper than pydantic-core's 200 levels (98 levels of bundles, 199 brackets):
    # the mirror takes bundles some 39 levels deep and leaves anything deeper to the checker.
    mirrored = assert_never_laxer(ORDER, _nested(levels))
    assert (mirrored is not None) == (levels <= _structs._LEVELS - 1)
    assert (_checker_says(ORDER, _nested(levels)) is not None) == (levels <= 98)


def test_an_empty_list_of_bundles_is_taken_at_any_depth_the_mirror_reads() -> None:
    line = _nested(_structs._LEVELS - 1).replace(b'{"id":"z"}', b'{"id":"z","bundledProducts":[]}')
    assert assert_never_laxer(ORDER, line) is not None


def test_realistic_records_are_taken_with_the_checkers_values() -> None:
    for order in fake_orders(300, seed=11):
        for line in (json.dumps(order).encode(), json.dumps(order, ensure_ascii=False).encode()):
            assert assert_never_laxer(ORDER, line) is not None
    for costs in fake_transaction_costs(100, seed=11):
        assert assert_never_laxer(COSTS, json.dumps(costs).encode()) is not None


# -- random damage to realistic orders ---------------------------------------------------------------

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -1, 1, 0.5, 1.0, 1e10, 9_999_999_999, 10_000_000_000, "EUR", "DE", "DEU", ""])
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


def _damage(record: dict[str, Any], rng: random.Random, value: Any, name: str) -> dict[str, Any]:
    paths = paths_in(record)[1:]
    path = rng.choice(paths)
    parent: Any = record
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    action = rng.randrange(4)
    if action == 0:
        parent[last] = value  # any JSON value where a field was
    elif action == 1 and isinstance(parent, dict):
        del parent[last]
    elif action == 2 and isinstance(parent, dict):
        parent[name] = value  # a known or unknown key added
    elif isinstance(parent[last], str):
        parent[last] = parent[last] + rng.choice(["\n", "\u2028", "😀", " ", "\\", '"'])
    else:
        parent[last] = value
    return record


KEYS = ["id", "quantity", "productGmv", "taxRate", "discountAmount", "isVoucher", "descriptor",
        "countryCodeIso2Letter", "currencyCodeIso3Letter", "cancelledAt", "closedAt", "bundledProducts",
        "lineItems", "tags", "refundedLineItems", "lineItemId", "order_name", "zzUnknown"]  # fmt: skip


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    values=st.lists(json_values, min_size=1, max_size=4),
    names=st.lists(st.sampled_from(KEYS) | st.text(max_size=6), min_size=4, max_size=4),
    ascii_only=st.booleans(),
    version=st.sampled_from(["07.2025", "12.2022"]),
)
def test_damaged_orders_are_never_vouched_for_when_the_checker_refuses_them(
    seed: int, values: list[Any], names: list[str], ascii_only: bool, version: str
) -> None:
    rng = random.Random(seed)
    record = fake_order(seed, seed=seed, version=version)
    for value, name in zip(values, names, strict=False):
        record = _damage(record, rng, value, name)
    assert_never_laxer(MODELS["orders"][version], json.dumps(record, ensure_ascii=ascii_only).encode())


def test_the_validator_gives_the_same_results_with_and_without_the_quick_look() -> None:
    quick = RecordValidator("orders", "07.2025")
    plain = RecordValidator("orders", "07.2025")
    plain._quick = None
    rng = random.Random(5)
    lines = []
    for n, order in enumerate(fake_orders(200, seed=5)):
        damaged = order
        if n % 3 == 0:
            damaged = _damage(order, rng, rng.choice([None, -1, "x", 1e10, [], {}]), rng.choice(KEYS))
        lines.append(json.dumps(damaged).encode())
    for line in [*lines, *(edge for edge, _ in EDGES)]:
        assert quick.validate_json_fields(line) == plain.validate_json_fields(line), line[:200]


def test_records_with_unknown_keys_are_taken_with_their_paths_in_the_checkers_order() -> None:
    validator = RecordValidator("orders", "07.2025")
    line = (
        b'{"zzA":1,"id":"A","lineItems":[{"zzB":1,"id":"x","taxes":[{"zzC":2}],"zzD":[1]},{"id":"y",'
        b'"zzE":{}}],"zzF":null,"shipping":{"zzG":1},"customer":{"tags":["a"],"zzH":{"deep":[1,{"x":2}]}}}'
    )
    result = validator.validate_json_fields(line)
    assert result is not None
    assert result[4] == (
        "shipping.zzG",
        "customer.zzH",
        "lineItems.0.taxes.0.zzC",
        "lineItems.0.zzB",
        "lineItems.0.zzD",
        "lineItems.1.zzE",
        "zzA",
        "zzF",
    )
    assert result[0] == json.loads(line)
    assert assert_never_laxer(ORDER, line) is None  # the strict look refuses it; the other takes it
    # A known field under its snake_case name is not vouched for: validate() renames it. Nor is an
    # unknown field holding a number JSON cannot carry (1e400 reads as infinity).
    assert validator.validate_json_fields(b'{"id":"A","order_name":"x"}') is None
    assert validator.validate_json_fields(b'{"id":"A","zz":[1,{"x":-1e400}]}') is None
    assert assert_never_laxer(ORDER, b'{"id":"A","zz":[1,{"x":-1e400}]}') is None


def test_the_quick_look_stops_when_it_refuses_most_records() -> None:
    # Every record is invalid (a tax rate in percent): both looks refuse each, so after a while the
    # validator stops asking them. Records with unknown keys are not refused: they are reported.
    validator = RecordValidator("orders", "07.2025")
    assert validator._quick is not None
    for order in fake_orders(1200, seed=2):
        order["zzNote"] = "gift"
        order["lineItems"][0]["taxes"] = [{"taxRate": 19}]
        assert validator.validate_json_fields(json.dumps(order).encode()) is None
    assert validator._quick is None
    noted = next(fake_orders(1, seed=3))
    noted["zzNote"] = "gift"
    result = RecordValidator("orders", "07.2025").validate_json_fields(json.dumps(noted).encode())
    assert result is not None
    assert result[4] == ("zzNote",)


def test_without_msgspec_there_is_no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_structs, "msgspec", None)
    _structs.struct_checker.cache_clear()
    try:
        assert _structs.struct_checker(ORDER) is None
        validator = RecordValidator("orders", "07.2025")
        line = json.dumps(next(fake_orders(1, seed=1))).encode()
        result = validator.validate_json_fields(line)
        assert result is not None
        assert result[2] == ()
    finally:
        _structs.struct_checker.cache_clear()


def test_unknown_keys_met_before_take_the_learned_look() -> None:
    quick = _structs.struct_checker(ORDER)
    assert quick is not None
    order = next(fake_orders(1, seed=9))
    order["zzStore"] = 1
    order["lineItems"][0]["zzItem"] = {"a": [1, 2]}
    line = json.dumps(order).encode()
    both = quick.with_unknown(line)
    assert both is not None
    quick.learn(both[2])
    learned = quick.with_learned(line)
    assert learned is not None
    assert learned[1] == both[1] == ("lineItems.0.zzItem", "zzStore")
    assert _floats(learned[0]) == _floats(both[0])
    # Not taken by the learned look: a key never met, an invalid known value, two learned keys in one
    # object (their order in the record decides the order of the report).
    for damage in (
        lambda o: o.__setitem__("zzOther", 1),
        lambda o: o.__setitem__("currencyCodeIso3Letter", "EURO"),
        lambda o: o["lineItems"][0]["taxes"].append({"taxRate": 19}),
    ):
        damaged = json.loads(line)
        damage(damaged)
        assert quick.with_learned(json.dumps(damaged).encode()) is None
    for line_ in (line, json.dumps({**order, "zzOther": 2}).encode()):
        assert_never_laxer(ORDER, line_)
    validator = RecordValidator("orders", "07.2025")
    plain = _plain(ORDER)
    for n, record in enumerate(fake_orders(60, seed=10)):
        if n % 2:
            record["zzStore"] = n
        if n % 3:
            record["zzOther"] = [n]
        data = json.dumps(record).encode()
        got, want = validator.validate_json_fields(data), plain.validate_json_fields(data)
        assert got is not None
        assert want is not None
        assert got[1:] == want[1:]
        assert _floats(got[0]) == _floats(want[0])
