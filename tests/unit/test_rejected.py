"""RejectedWriter: JSON Lines of rejected records, local or object storage, created only when needed."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import fsspec
import pydantic

from airflow_provider_klar.results import FieldError
from airflow_provider_klar.upload import RejectedWriter, iter_path


def lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def test_writes_one_json_line_per_rejected_record(tmp_path: Path) -> None:
    target = tmp_path / "out" / "rejected.jsonl"
    record = {"id": "ORD-7", "lineItems": [{"taxes": [{"taxRate": 19}]}]}
    with RejectedWriter(str(target)) as writer:
        writer.reject(
            position=7,
            source="orders.jsonl",
            line=8,
            id="ORD-7",
            errors=[FieldError("lineItems.0.taxes.0.taxRate", "must be a fraction such as 0.19", 19)],
            record=record,
            batch=0,
            index_in_batch=7,
        )
        writer.reject(
            position=9,
            source="orders.jsonl",
            line=10,
            id=None,
            errors=["Klar refused it", {"path": "id", "message": "missing"}],
            record={"x": 1},
        )

    assert writer.count == 2
    assert writer.location == str(target)
    first, second = lines(target.read_bytes())
    assert first == {
        "position": 7,
        "source": "orders.jsonl",
        "line": 8,
        "batch": 0,
        "index_in_batch": 7,
        "id": "ORD-7",
        "errors": [
            {"path": "lineItems.0.taxes.0.taxRate", "message": "must be a fraction such as 0.19", "value": 19}
        ],
        "record": record,
    }
    assert list(first) == ["position", "source", "line", "batch", "index_in_batch", "id", "errors", "record"]
    assert second["errors"] == [
        {"path": "", "message": "Klar refused it", "value": None},
        {"path": "id", "message": "missing", "value": None},
    ]
    assert "batch" not in second
    assert "index_in_batch" not in second


def test_no_file_is_created_when_nothing_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "rejected.jsonl"
    with RejectedWriter(target) as writer:
        pass
    assert writer.count == 0
    assert writer.location is None
    assert not target.exists()
    assert not target.parent.exists()


def test_without_a_path_it_only_counts(tmp_path: Path) -> None:
    with RejectedWriter(None) as writer:
        for i in range(3):
            writer.reject(position=i, source="records", line=i, id=str(i), errors=["bad"], record={})
    assert writer.count == 3
    assert writer.location is None
    assert list(tmp_path.iterdir()) == []


def test_malformed_lines_are_written_with_their_raw_text(tmp_path: Path) -> None:
    source = tmp_path / "orders.jsonl"
    source.write_bytes(b'{"id": "A"}\n{"id": "B",, }\n')
    target = tmp_path / "rejected.jsonl"

    with RejectedWriter(target) as writer:
        for item in iter_path(source):
            if not item.ok:
                writer.write_unreadable(item)

    [entry] = lines(target.read_bytes())
    assert entry["line"] == 2
    assert entry["position"] == 1
    assert entry["source"] == str(source)
    assert entry["record"] == '{"id": "B",, }'
    assert entry["errors"][0]["message"].startswith("line 2: invalid JSON")


class Order(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True)

    order_id: str = pydantic.Field(alias="orderId")
    created: datetime


def test_models_and_values_json_does_not_know_are_still_written(tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    when = datetime(2025, 7, 1, tzinfo=timezone.utc)
    with RejectedWriter(target) as writer:
        writer.reject(
            position=0, source="records", line=0, id="A", errors=[], record=Order(orderId="A", created=when)
        )
        writer.reject(
            position=1,
            source="records",
            line=1,
            id="B",
            errors=[FieldError("total", "not a number", Decimal("1.5"))],
            record={"total": Decimal("1.5"), "at": when},
        )

    first, second = lines(target.read_bytes())
    assert first["record"] == {"orderId": "A", "created": "2025-07-01T00:00:00Z"}
    assert second["record"] == {"total": "1.5", "at": "2025-07-01 00:00:00+00:00"}
    assert second["errors"][0]["value"] == "1.5"


def test_writes_to_object_storage(memory_fs: fsspec.AbstractFileSystem) -> None:
    with RejectedWriter("memory://bucket/runs/r1/rejected.jsonl") as writer:
        writer.reject(position=3, source="s", line=4, id="X", errors=["no"], record={"id": "X"})

    assert writer.location == "memory://bucket/runs/r1/rejected.jsonl"
    [entry] = lines(memory_fs.cat("/bucket/runs/r1/rejected.jsonl"))
    assert entry["id"] == "X"
    assert entry["record"] == {"id": "X"}


def test_an_existing_file_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    target.write_text('{"old": true}\n')
    with RejectedWriter(target) as writer:
        writer.reject(position=0, source="s", line=1, id="new", errors=["x"], record={})
    assert [e["id"] for e in lines(target.read_bytes())] == ["new"]


def test_threads_may_share_one_writer_without_mixing_lines(tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    with RejectedWriter(target) as writer:

        def work(thread: int) -> None:
            for i in range(200):
                writer.reject(
                    position=thread * 1000 + i,
                    source="s",
                    line=i,
                    id=f"{thread}-{i}",
                    errors=["bad"],
                    record={"pad": "x" * 500},
                )

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    entries = lines(target.read_bytes())
    assert writer.count == 800
    assert sorted(e["position"] for e in entries) == sorted(
        t * 1000 + i for t in range(4) for i in range(200)
    )


def test_write_takes_a_line_composed_by_the_caller(tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    when = datetime(2025, 7, 1, tzinfo=timezone.utc)
    with RejectedWriter(target) as writer:
        writer.write({"position": 4, "where": "a.jsonl line 5", "record": Order(orderId="Z", created=when)})
        writer.write({"position": 5, "errors": [], "record": None})
    assert writer.count == 2
    assert lines(target.read_bytes()) == [
        {
            "position": 4,
            "where": "a.jsonl line 5",
            "record": {"orderId": "Z", "created": "2025-07-01T00:00:00Z"},
        },
        {"position": 5, "errors": [], "record": None},
    ]


def strict_lines(data: bytes) -> list[dict[str, Any]]:
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in data.decode("utf-8").splitlines()]


def test_every_line_is_strict_json_whatever_the_record_holds(tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    deep: Any = 1
    # Shallow enough for json.loads to read back here; test_jsonsafe writes 100,000 levels.
    for _ in range(600):
        deep = {"x": deep}
    with RejectedWriter(target) as writer:
        writer.reject(
            position=0,
            source="records",
            line=0,
            id="A",
            errors=[FieldError("total", "must be a finite number, got nan", float("nan"))],
            record={"id": "A", "total": float("nan"), "fees": [float("inf"), -float("inf")]},
        )
        writer.reject(position=1, source="records", line=1, id="B", errors=["too deep"], record={"foo": deep})
        writer.reject(position=2, source="records", line=2, id="C", errors=["x"], record={"name": "\ud800"})

    nan_line, deep_line, surrogate_line = strict_lines(target.read_bytes())
    assert nan_line["record"] == {"id": "A", "total": "NaN", "fees": ["Infinity", "-Infinity"]}
    # The line says that the strings stand for numbers JSON cannot write.
    assert nan_line["errors"][0] == {
        "path": "total",
        "message": "must be a finite number, got nan",
        "value": "NaN",
    }
    assert "NaN" in nan_line["errors"][-1]["message"]
    assert "strings" in nan_line["errors"][-1]["message"]
    assert json.dumps(deep_line["record"]).count("{") == 601
    assert surrogate_line["record"] == {"name": "\ud800"}
    assert len(deep_line["errors"]) == 1
