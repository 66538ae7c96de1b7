"""Broken and hostile sources at task level: real Airflow (``dag.test()`` on SQLite), the sandbox over HTTP.

What a user sees when a file has a bad byte, a BOM in the wrong place, a syntax error, a record nested
hundreds of levels deep or numbers JSON cannot hold, and the loop of fixing the rejected file and
passing it back as ``path=``.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_klar.sandbox.fake_data import fake_logistics_costs, fake_orders
from tests.e2e._dags import run_dag, run_upload, summary_of, task_instances, write_jsonl

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

BOM = b"\xef\xbb\xbf"


def strict_lines(path: Path) -> list[dict[str, Any]]:
    """The rejected file's lines, refusing anything that is not strict JSON (NaN, Infinity)."""

    def refuse(token: str) -> Any:
        raise AssertionError(f"{token} in the rejected file is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text("utf-8").splitlines()]


def nested(levels: int) -> str:
    return '{"x":' * levels + "1" + "}" * levels


def test_a_csv_with_a_byte_that_is_not_utf8_rejects_that_row_at_its_true_line_and_sends_the_rest(
    store_dag: Callable[[Any], None], klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path
) -> None:
    rows = [f"{r['orderId']},{r['totalLogisticsCosts']}\n".encode() for r in fake_logistics_costs(3234)]
    # Line 1,502 (the header is line 1) carries a Windows-1252 "é", as a mis-saved export does.
    bad_id = rows[1500].split(b",")[0].decode()
    rows[1500] = rows[1500].replace(b",", b"\xe9,", 1)
    source = tmp_path / "logistics.csv.gz"
    source.write_bytes(gzip.compress(b"orderId,totalLogisticsCosts\n" + b"".join(rows)))
    rejected = tmp_path / "rejected.jsonl"

    dag_run = run_upload(
        "klar_e2e_csv_bad_byte",
        store_dag,
        resource="logistics-costs",
        path=str(source),
        max_rejected=1,
        rejected_path=str(rejected),
    )

    assert dag_run.state == "success"
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (3234, 3233, 1)
    assert klar_sandbox.count("logistics-costs") == 3233
    assert klar_sandbox.get("logistics-costs", bad_id) is None
    [line] = strict_lines(rejected)
    assert (line["line"], line["position"]) == (1502, 1500)
    assert line["errors"][0]["message"] == (
        f"Malformed record: line 1502: byte 0xE9 at byte {len(bad_id) + 1} of the line is not UTF-8; "
        "save the file as UTF-8"
    )


def test_boms_a_file_opening_one_is_read_one_further_on_is_named(
    store_dag: Callable[[Any], None], klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path
) -> None:
    from airflow_provider_klar.operators.klar import KlarUploadOperator

    orders = [json.dumps(o).encode() + b"\n" for o in fake_orders(40)]
    # Two exports, each with a BOM, concatenated with `cat`: the second BOM opens line 21.
    jsonl = tmp_path / "orders.jsonl"
    jsonl.write_bytes(BOM + b"".join(orders[:20]) + BOM + b"".join(orders[20:]))
    costs = tmp_path / "logistics.csv"
    costs.write_bytes(BOM + b"orderId,totalLogisticsCosts\nL-1,4.5\nL-2,3\n")
    rejected = tmp_path / "rejected.jsonl"

    def build() -> None:
        KlarUploadOperator(task_id="orders", path=str(jsonl), max_rejected=1, rejected_path=str(rejected))
        KlarUploadOperator(task_id="costs", resource="logistics-costs", path=str(costs))

    dag_run = run_dag("klar_e2e_bom", build, store_dag)

    assert dag_run.state == "success"
    assert klar_sandbox.count("orders") == 39
    assert klar_sandbox.get("orders", "ORD-20") is None
    assert klar_sandbox.get("logistics-costs", "L-1") == {"orderId": "L-1", "totalLogisticsCosts": 4.5}
    assert summary_of(task_instances(dag_run, "costs")[0])["accepted"] == 2
    [line] = strict_lines(rejected)
    assert line["line"] == 21
    assert line["id"] == "ORD-20"
    assert "line 21: starts with a byte order mark (BOM, bytes EF BB BF)" in line["errors"][0]["message"]


def test_a_json_array_with_a_syntax_error_fails_the_task_whatever_max_rejected_says(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    items = [json.dumps(o) for o in fake_orders(3000)]
    items[1500] = items[1500].replace('"id":', '"id" ', 1)  # a colon missing in item 1,500
    source = tmp_path / "orders.json"
    source.write_text("[\n" + ",\n".join(items) + "\n]\n")

    dag_run = run_upload(
        "klar_e2e_json_syntax",
        store_dag,
        path=str(source),
        max_rejected=10,
        batch_size=250,
    )

    assert dag_run.state == "failed"
    out = capfd.readouterr().out
    assert (
        f"KlarSourceError: Reading {source} stopped after 1,500 records (the last was item 1499 of "
        f"{source}): {source}, item 1500: invalid JSON: parse error: object key and value must be "
        f"separated by a colon (':'). The rest of {source} was not read. The records read were sent and "
        "accounted for (1,500 orders records accepted, 0 rejected); the rest was not read, so the task "
        "fails whatever max_rejected says."
    ) in out
    assert "Every valid record was sent" not in out
    # Everything before the break reached Klar, nothing after it; the summary says so too.
    assert {r["id"] for r in klar_sandbox.records("orders")} == {f"ORD-{i}" for i in range(1500)}
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (1500, 1500, 0)
    assert summary["unread"]["source"] == str(source)
    assert summary["unread"]["after"] == 1500


def test_a_deeply_nested_record_among_valid_ones_is_rejected_as_itself(
    store_dag: Callable[[Any], None], klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path
) -> None:
    items = [json.dumps(o) for o in fake_orders(60)]
    # Unknown fields nested 400 and 20,000 levels deep: a JSON array's streaming parser takes any depth
    # (its time grows with the square of the depth: 20,000 levels take about a second, 100,000 half a minute).
    items[10] = items[10][:-1] + ', "debug": ' + nested(400) + "}"
    items[30] = items[30][:-1] + ', "debug": ' + nested(20_000) + "}"
    array = tmp_path / "orders.json"
    array.write_text("[" + ",".join(items) + "]")
    # In JSON Lines, whose parser stops at 200 levels: 400 and 100,000 levels.
    more = [json.dumps(o) for o in fake_orders(5, start=100)]
    more[1] = more[1][:-1] + ', "debug": ' + nested(100_000) + "}"
    lines = tmp_path / "more.jsonl"
    lines.write_text("\n".join(more) + "\n" + items[10] + "\n")
    rejected = tmp_path / "rejected.jsonl"

    dag_run = run_upload(
        "klar_e2e_deep",
        store_dag,
        path=str(tmp_path / "*.json*"),
        batch_size=25,
        max_rejected=4,
        rejected_path=str(rejected),
    )

    assert dag_run.state == "success"
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (66, 62, 4)
    stored = {r["id"] for r in klar_sandbox.records("orders")}
    assert stored == {f"ORD-{i}" for i in [*range(60), *range(100, 105)] if i not in (10, 30, 101)}
    text = rejected.read_text("utf-8")
    found = [json.loads(re.sub(r'"record":.*}$', '"record":null}', line)) for line in text.splitlines()]
    assert sorted((f["id"], f["line"]) for f in found) == [
        ("ORD-10", 6),
        ("ORD-10", 10),
        ("ORD-101", 2),
        ("ORD-30", 30),
    ]
    for f in found:
        assert "nested more than 200 levels deep" in f["errors"][0]["message"]
    # Records read from the array are written whole, 20,000 levels included.
    assert text.count('{"x":') == 400 + 20_000


def test_a_fixed_rejected_file_goes_back_in_as_path(
    store_dag: Callable[[Any], None], klar_sandbox: SandboxServer, airflow_db: Path, tmp_path: Path
) -> None:
    orders: list[Any] = list(fake_orders(50))
    orders[3]["lineItems"][0]["taxes"][0]["taxRate"] = 19  # a percentage
    orders[7]["cancelledAt"] = 0
    orders[12] = json.dumps(orders[12]).replace('"transactionCosts": ', '"transactionCosts": 1e400, "x": ', 1)
    orders[20] = json.dumps(orders[20])[:-1] + ', "oops": NaN}'  # not JSON: rejected as a line
    source = write_jsonl(tmp_path / "orders.jsonl", orders)
    rejected = tmp_path / "rejected.jsonl"
    again = tmp_path / "rejected-again.jsonl"

    first = run_upload(
        "klar_e2e_loop_1", store_dag, path=str(source), max_rejected=5, rejected_path=str(rejected)
    )
    assert first.state == "success"
    assert klar_sandbox.count("orders") == 46
    lines = strict_lines(rejected)
    by_id = {line["id"]: line for line in lines}
    assert sorted(by_id) == ["ORD-12", "ORD-20", "ORD-3", "ORD-7"]
    # 1e400 reads as infinity: written as a string, and the line says so.
    assert by_id["ORD-12"]["record"]["transactionCosts"] == "Infinity"
    assert any("written in this file as the strings" in e["message"] for e in by_id["ORD-12"]["errors"])
    assert isinstance(by_id["ORD-20"]["record"], str)

    # Fix them as a person would: the fields named in the errors, and the text of the broken line.
    for line in lines:
        record = line["record"]
        if line["id"] == "ORD-3":
            record["lineItems"][0]["taxes"][0]["taxRate"] = 0.19
        elif line["id"] == "ORD-7":
            del record["cancelledAt"]
        elif line["id"] == "ORD-12":
            record["transactionCosts"] = 1.5
        else:
            line["record"] = record.replace(', "oops": NaN', "")
    rejected.write_text("".join(json.dumps(line) + "\n" for line in lines))

    dag_run = run_upload("klar_e2e_loop_2", store_dag, path=str(rejected), rejected_path=str(again))

    assert dag_run.state == "success"
    summary = summary_of(task_instances(dag_run, "upload")[0])
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (4, 4, 0)
    assert klar_sandbox.count("orders") == 50
    assert klar_sandbox.get("orders", "ORD-3")["lineItems"][0]["taxes"][0]["taxRate"] == 0.19  # type: ignore[index]
    assert "cancelledAt" not in klar_sandbox.get("orders", "ORD-7")  # type: ignore[operator]
    assert "oops" not in klar_sandbox.get("orders", "ORD-20")  # type: ignore[operator]
    assert not again.exists()
