"""Bodies, cutting a batch under a byte cap, and merging the results of its runs."""

from __future__ import annotations

import itertools
import json

import pytest

from airflow_provider_klar.hooks._wire import body, body_size, cut, merge
from airflow_provider_klar.results import KlarBatchResult, OutcomeState, RecordOutcome

PARTS = [json.dumps({"id": f"R{i}", "pad": "x" * i}).encode() for i in range(10)]


@pytest.mark.parametrize("envelope", ["array", "items"])
def test_bodies_are_json_in_either_envelope(envelope: str) -> None:
    content = body(PARTS, envelope)
    decoded = json.loads(content)
    records = decoded if envelope == "array" else decoded["items"]
    assert [r["id"] for r in records] == [f"R{i}" for i in range(10)]
    assert body_size(PARTS, envelope) == len(content)
    assert body_size(PARTS[:1], envelope) == len(body(PARTS[:1], envelope))


@pytest.mark.parametrize("envelope", ["array", "items"])
@pytest.mark.parametrize("cap", [None, 10, 40, 60, 100, 10_000])
def test_runs_are_consecutive_and_under_the_cap(envelope: str, cap: int | None) -> None:
    runs = cut(PARTS, envelope, cap)
    assert runs[0][0] == 0
    assert runs[-1][1] == len(PARTS)
    assert all(end == start for (_, end), (start, _) in itertools.pairwise(runs))
    for start, end in runs:
        assert end > start
        # Over the cap only when one record alone is larger.
        assert cap is None or body_size(PARTS[start:end], envelope) <= cap or end - start == 1
    if cap is None or cap >= body_size(PARTS, envelope):
        assert runs == [(0, 10)]


def test_merged_outcomes_are_reindexed_in_order() -> None:
    def result(code: int, ids: list[str], state: OutcomeState) -> KlarBatchResult:
        outcomes = tuple(RecordOutcome(i, record_id, state) for i, record_id in enumerate(ids))
        return KlarBatchResult("orders", "07.2025", "upload", code, outcomes)

    first = result(201, ["A", "B"], OutcomeState.ACCEPTED)
    second = result(413, ["C"], OutcomeState.REJECTED)
    merged = merge([(0, first), (2, second)], first)
    assert [(o.index, o.id, o.state) for o in merged.outcomes] == [
        (0, "A", OutcomeState.ACCEPTED),
        (1, "B", OutcomeState.ACCEPTED),
        (2, "C", OutcomeState.REJECTED),
    ]
    assert merged.status_code == 413
