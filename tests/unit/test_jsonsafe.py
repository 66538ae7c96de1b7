"""Hostile values: depth measured without recursion, strict JSON written whatever a record holds."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_klar._jsonsafe import MAX_DEPTH, deepest_path, strict_json


def nested(levels: int, leaf: Any = 1) -> dict[str, Any]:
    """An object ``levels`` deep: {"x": {"x": ... leaf}} with ``levels`` dicts in all."""
    value: Any = leaf
    for _ in range(levels):
        value = {"x": value}
    return value


def strict_loads(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("levels", [1, 10, MAX_DEPTH])
def test_records_up_to_the_limit_are_not_too_deep(levels: int) -> None:
    assert deepest_path(nested(levels)) is None


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 400, 100_000])
def test_deeper_records_are_found_without_recursion(levels: int) -> None:
    path = deepest_path({"id": "A", "foo": nested(levels - 1)})
    assert path is not None
    # The path starts where the record does and is cut to a readable length.
    assert path.startswith("foo.x.x")
    assert "more" in path
    assert len(path) < 200


def test_lists_count_as_levels_and_name_their_index() -> None:
    value: Any = 1
    for _ in range(5):
        value = [0, value]
    assert deepest_path({"a": value}, limit=3) == "a.1.1"
    assert deepest_path(5) is None
    assert deepest_path([[[]]], limit=2) == "0.0"


def test_plain_values_take_the_standard_encoder() -> None:
    assert strict_json({"id": "A", "n": [1, 2.5, None, True]}) == ('{"id":"A","n":[1,2.5,null,true]}', False)


def test_non_finite_numbers_become_strings_and_are_reported() -> None:
    text, changed = strict_json({"a": math.nan, "b": [math.inf, -math.inf], "c": 1.5})
    assert changed
    assert strict_loads(text) == {"a": "NaN", "b": ["Infinity", "-Infinity"], "c": 1.5}


def test_any_depth_is_written_in_full() -> None:
    deep = nested(100_000)
    text, changed = strict_json({"id": "A", "foo": deep, "bad": math.nan})
    assert changed
    assert text.count("{") == 100_001
    assert text.startswith('{"id":"A","foo":{"x":{"x":')
    assert text.endswith('}},"bad":"NaN"}')


def test_lone_surrogates_are_escaped_so_the_text_is_utf8() -> None:
    text, _ = strict_json({"name": "a\ud800b", "ok": "é"})
    text.encode("utf-8")
    assert json.loads(text) == {"name": "a\ud800b", "ok": "é"}


def test_huge_integers_are_written_whole() -> None:
    huge = 7 * 10**5000 + 3
    text, changed = strict_json({"n": huge, "m": -huge})
    assert not changed
    limit = sys.get_int_max_str_digits()
    try:
        sys.set_int_max_str_digits(0)
        assert json.loads(text) == {"n": huge, "m": -huge}
    finally:
        sys.set_int_max_str_digits(limit)


def test_values_json_does_not_know_are_written_as_text() -> None:
    when = datetime(2024, 1, 2, tzinfo=timezone.utc)

    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    text, changed = strict_json(
        {"at": when, "amount": Decimal("2.50"), 3: "int key", "w": Weird(), "nan": math.nan}
    )
    assert changed
    assert strict_loads(text) == {
        "at": str(when),
        "amount": "2.50",
        "3": "int key",
        "w": "<Weird>",
        "nan": "NaN",
    }
