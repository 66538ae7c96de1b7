"""``transform=``: each source record mapped before validation; a failure rejects that record only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_klar.models import RecordValidator
from airflow_provider_klar.upload.prepare import make_preparer
from airflow_provider_klar.upload.sources import iter_path, iter_records
from airflow_provider_klar.upload.transform import apply_transform


def camel(row: dict[str, Any]) -> dict[str, Any]:
    """A flat cost export in snake_case as Klar's logistics costs."""
    return {"orderId": str(row["order_id"]), "totalLogisticsCosts": float(row["shipping_cost"])}


def test_every_record_is_transformed_in_order() -> None:
    rows = [{"order_id": 1, "shipping_cost": "4.5"}, {"order_id": 2, "shipping_cost": 3}]
    out = list(apply_transform(iter_records(rows), camel))
    assert [r.record for r in out] == [
        {"orderId": "1", "totalLogisticsCosts": 4.5},
        {"orderId": "2", "totalLogisticsCosts": 3.0},
    ]
    assert [(r.position, r.line, r.source) for r in out] == [(0, 0, "records"), (1, 1, "records")]


def test_an_exception_rejects_that_record_with_its_message_and_the_rest_go_on() -> None:
    rows = [
        {"order_id": 1, "shipping_cost": 4},
        {"order": 2, "shipping_cost": 3},  # no order_id: KeyError
        {"order_id": 3, "shipping_cost": "n/a"},  # ValueError
        {"order_id": 4, "shipping_cost": 1},
    ]
    out = list(apply_transform(iter_records(rows), camel))
    assert [r.ok for r in out] == [True, False, False, True]
    assert out[1].error == "record 1: transform= failed: camel raised KeyError: 'order_id'"
    assert out[2].error == (
        "record 2: transform= failed: camel raised ValueError: could not convert string to float: 'n/a'"
    )
    # The record as read, for the rejected file.
    assert json.loads(str(out[1].raw)) == {"order": 2, "shipping_cost": 3}
    assert out[3].record == {"orderId": "4", "totalLogisticsCosts": 1.0}


def test_a_result_that_is_not_a_record_is_rejected() -> None:
    out = list(apply_transform(iter_records([{"a": 1}]), lambda row: [row]))
    assert out[0].error == (
        "record 0: transform= failed: <lambda> returned list; it must return the record, a dict"
    )


def test_records_that_could_not_be_read_pass_untouched(tmp_path: Path) -> None:
    path = tmp_path / "costs.jsonl"
    path.write_text('{"order_id": 1, "shipping_cost": 2}\nnot json\n')
    calls: list[Any] = []

    def spy(row: dict[str, Any]) -> dict[str, Any]:
        calls.append(row)
        return camel(row)

    out = list(apply_transform(iter_path(path, resource="logistics-costs"), spy))
    assert len(calls) == 1
    assert out[0].record == {"orderId": "1", "totalLogisticsCosts": 2.0}
    assert out[1].error is not None
    assert out[1].error.startswith("line 2: invalid JSON")


def test_a_rejected_transform_says_so_and_keeps_the_id_when_it_can_be_read() -> None:
    def explode(row: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("no currency for\nthis shop")

    src = next(apply_transform(iter_records([{"orderId": "ORD-9", "totalLogisticsCosts": 1}]), explode))
    prepared = make_preparer(RecordValidator("logistics-costs", "04.2024"), "orderId")(src)
    assert prepared.encoded is None
    assert prepared.id == "ORD-9"
    assert [str(e) for e in prepared.errors] == [
        "record 0: transform= failed: explode raised RuntimeError: no currency for this shop"
    ]


@pytest.mark.parametrize("transformed", [False, True])
def test_json_lines_bytes_are_not_sent_as_read_after_a_transform(tmp_path: Path, transformed: bool) -> None:
    """The fast path sends a line's bytes unchanged when the validated dict is the one read; a transform
    that edits that very dict in place must still have its edit sent."""
    line = '{"orderId": "ORD-1", "totalLogisticsCosts": 2.5}'
    path = tmp_path / "costs.jsonl"
    path.write_text(line + "\n")

    def in_place(record: dict[str, Any]) -> dict[str, Any]:
        record["totalLogisticsCosts"] = 9.0
        return record

    source: Any = iter_path(path, resource="logistics-costs")
    if transformed:
        source = apply_transform(source, in_place)
    prepare = make_preparer(RecordValidator("logistics-costs", "04.2024"), "orderId")
    encoded = prepare(next(iter(source))).encoded
    assert encoded is not None
    if transformed:
        assert json.loads(encoded) == {"orderId": "ORD-1", "totalLogisticsCosts": 9.0}
    else:
        assert encoded == line.encode()  # the fast path itself, untouched
