"""The tally: rejections, ids, error lines, aggregated warnings, checkpoint state, max_rejected."""

from __future__ import annotations

import json

import pytest

from airflow_provider_klar.results import FieldError
from airflow_provider_klar.upload.accounting import (
    MAX_IDS,
    Rejection,
    RejectionOrigin,
    Tally,
    WarningTally,
    check_max_rejected,
    describe_limit,
    exceeds_max_rejected,
    generic_path,
)


def rejection(n: int, origin: RejectionOrigin = RejectionOrigin.LOCAL) -> Rejection:
    errors = (FieldError("lineItems.0.taxes.0.taxRate", "must be a number", "19%"),)
    return Rejection(n, "orders.jsonl", n + 1, f"ORD-{n}", errors, origin)


def test_rejections_are_counted_by_origin_with_ids_and_readable_lines() -> None:
    tally = Tally()
    tally.add_rejection(rejection(0))
    tally.add_rejection(rejection(1, RejectionOrigin.KLAR))
    tally.add_rejection(Rejection(2, "orders.jsonl", 3, None, (), RejectionOrigin.LOCAL))
    assert (tally.rejected_local, tally.rejected_klar, tally.rejected) == (2, 1, 3)
    assert tally.rejected_ids == ["ORD-0", "ORD-1"]
    assert (
        tally.errors[0] == "line 1 of orders.jsonl (id ORD-0): lineItems.0.taxes.0.taxRate: must be a number"
    )
    assert tally.errors[2] == "line 3 of orders.jsonl: rejected"


def test_ids_and_errors_stay_bounded() -> None:
    tally = Tally()
    for n in range(500):
        tally.add_rejection(rejection(n))
    assert tally.rejected == 500
    assert len(tally.rejected_ids) == MAX_IDS
    assert len(tally.errors) == 20
    assert len(json.dumps(tally.to_state())) < 10_000


def test_warnings_are_aggregated_per_field_not_per_record() -> None:
    warnings = WarningTally()
    for n in range(120):
        warnings.add(f"ORD-{n}", (), ("createdat", "lineItems.0.foo", "lineItems.1.foo"))
    pitfall = FieldError("lineItems.0.taxes.0.taxRate", "taxRate 19 looks like a percentage; send 0.19")
    for n in range(3):
        warnings.add(f"ORD-{n}", (pitfall, pitfall), ())
    assert warnings.unknown_fields == {"createdat": 120, "lineItems.*.foo": 120}
    assert warnings.pitfalls == {"lineItems.*.taxes.*.taxRate": 3}
    unknown, pitfalls = warnings.messages()
    assert unknown.startswith(
        "Records carry fields the Klar models do not know: "
        "createdat (120 records), lineItems.*.foo (120 records)"
    )
    assert (
        "lineItems.*.taxes.*.taxRate (3 records, e.g. ORD-0: taxRate 19 looks like a percentage" in pitfalls
    )
    assert WarningTally().messages() == []


def test_generic_path_replaces_list_indexes_only() -> None:
    assert generic_path("lineItems.10.taxes.0.taxRate") == "lineItems.*.taxes.*.taxRate"
    assert generic_path("0.id") == "*.id"
    assert generic_path("item2.v3") == "item2.v3"


def test_tally_round_trips_through_json_and_merges_warnings() -> None:
    tally = Tally(records=10, accepted=8, batches=2, resent_not_stored=3)
    tally.add_rejection(rejection(4))
    tally.warnings.add("ORD-1", (), ("createdat",))
    copy = Tally.from_state(json.loads(json.dumps(tally.to_state())))
    assert copy == tally
    copy.warnings.merge(tally.warnings)
    assert copy.warnings.unknown_fields == {"createdat": 2}


@pytest.mark.parametrize(
    ("rejected", "records", "limit", "exceeded"),
    [
        (0, 100, 0, False),
        (1, 100, 0, True),
        (5, 100, 5, False),
        (6, 100, 5, True),
        (5, 100, 0.05, False),
        (6, 100, 0.05, True),
        (0, 0, 0.1, False),
        (1, 1, 0.5, True),
    ],
)
def test_max_rejected_as_count_or_ratio(rejected: int, records: int, limit: float, exceeded: bool) -> None:
    assert exceeds_max_rejected(rejected, records, limit) is exceeded


@pytest.mark.parametrize("value", [-1, 1.0, 1.5, -0.1, "3", None, True])
def test_max_rejected_must_be_a_count_or_a_ratio_below_one(value: object) -> None:
    with pytest.raises(ValueError, match="max_rejected"):
        check_max_rejected(value)


def test_max_rejected_in_words() -> None:
    assert check_max_rejected(0.25) == 0.25
    assert check_max_rejected(3) == 3
    assert describe_limit(0.05) == "max_rejected=0.05 allows 5.00% of the records"
    assert describe_limit(1) == "max_rejected=1 allows 1 record"
