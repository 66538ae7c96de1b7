"""The Parquet reader: rows become records (nested structs and lists as JSON), row numbers name them."""

from __future__ import annotations

import datetime as dt
import io
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from airflow_provider_klar.exceptions import KlarConfigurationError, KlarSourceError  # noqa: E402
from airflow_provider_klar.upload._parquet import BATCH_ROWS, iter_parquet  # noqa: E402
from airflow_provider_klar.upload.accounting import where  # noqa: E402
from airflow_provider_klar.upload.sources import detect_format, iter_path  # noqa: E402

LINE_ITEM = pa.struct(
    [
        ("id", pa.string()),
        ("sku", pa.string()),
        ("quantity", pa.int64()),
        ("productGmv", pa.float64()),
        ("taxes", pa.list_(pa.struct([("taxRate", pa.float64()), ("taxAmount", pa.float64())]))),
    ]
)


def write(table: Any, path: Path, row_group_size: int | None = None) -> Path:
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def read(path: Path, start: int = 0) -> list[Any]:
    with path.open("rb") as stream:
        return list(iter_parquet(stream, path.name, start))


def test_nested_structs_and_lists_become_json_objects_and_arrays(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": ["A-1", "A-2"],
            "tags": [["vip", "b2b"], []],
            "lineItems": pa.array(
                [
                    [
                        {
                            "id": "L1",
                            "sku": "S",
                            "quantity": 2,
                            "productGmv": 9.5,
                            "taxes": [{"taxRate": 0.19, "taxAmount": 1.5}],
                        }
                    ],
                    [{"id": "L2", "sku": None, "quantity": 1, "productGmv": 3.0, "taxes": []}],
                ],
                pa.list_(LINE_ITEM),
            ),
            "customer": pa.array(
                [{"id": "C1", "email": "a@example.com"}, None],
                pa.struct([("id", pa.string()), ("email", pa.string())]),
            ),
        }
    )
    records = read(write(table, tmp_path / "orders.parquet"))

    assert [r.record for r in records] == [
        {
            "id": "A-1",
            "tags": ["vip", "b2b"],
            "lineItems": [
                {
                    "id": "L1",
                    "sku": "S",
                    "quantity": 2,
                    "productGmv": 9.5,
                    "taxes": [{"taxRate": 0.19, "taxAmount": 1.5}],
                }
            ],
            "customer": {"id": "C1", "email": "a@example.com"},
        },
        # A null struct field (sku) and a null struct (customer) leave the field out: Klar rejects nulls.
        {"id": "A-2", "tags": [], "lineItems": [{"id": "L2", "quantity": 1, "productGmv": 3.0, "taxes": []}]},
    ]
    assert [(r.position, r.line, r.source, r.error) for r in records] == [
        (0, 1, "orders.parquet", None),
        (1, 2, "orders.parquet", None),
    ]


def test_warehouse_types_become_numbers_klar_takes(tmp_path: Path) -> None:
    noon = dt.datetime(2024, 3, 9, 12, 0, 0, tzinfo=dt.timezone.utc)
    seconds = int(noon.timestamp())
    table = pa.table(
        {
            "orderId": pa.array(["O1"]).dictionary_encode(),
            "at_s": pa.array([seconds], pa.timestamp("s")),
            "at_ms": pa.array([seconds * 1000 + 250], pa.timestamp("ms", tz="UTC")),
            # Nanoseconds: pyarrow cannot make a datetime of these; the reader must not need one.
            "at_ns": pa.array([seconds * 10**9], pa.timestamp("ns", tz="Europe/Berlin")),
            "day": pa.array([dt.date(2024, 3, 9)], pa.date32()),
            "cost": pa.array([Decimal("19.99")], pa.decimal128(10, 2)),
            "grams": pa.array([Decimal("250")], pa.decimal128(10, 0)),
            "note": pa.array([b"caf\xc3\xa9"], pa.binary()),
            "attrs": pa.array(
                [[("utmSource", "mail"), ("utmTerm", None)]], pa.map_(pa.string(), pa.string())
            ),
            "nested_at": pa.array(
                [[{"at": seconds * 10**6}]], pa.list_(pa.struct([("at", pa.timestamp("us"))]))
            ),
        }
    )
    (record,) = read(write(table, tmp_path / "costs.parquet"))

    midnight = int(dt.datetime(2024, 3, 9, tzinfo=dt.timezone.utc).timestamp())
    assert record.error is None
    assert record.record == {
        "orderId": "O1",
        "at_s": seconds,
        "at_ms": seconds + 0.25,
        "at_ns": seconds,  # an instant: its time zone does not change its Unix seconds
        "day": midnight,
        "cost": 19.99,
        "grams": 250,
        "note": "café",
        "attrs": {"utmSource": "mail"},
        "nested_at": [{"at": seconds}],
    }
    assert type(record.record["at_s"]) is int
    assert type(record.record["grams"]) is int


def test_a_value_json_cannot_carry_rejects_its_row_naming_the_column(tmp_path: Path) -> None:
    table = pa.table(
        {
            "orderId": ["O1", "O2", "O3"],
            "at": pa.array([None, dt.time(12, 30), None], pa.time64("us")),
            "blob": pa.array([b"ok", None, b"\xff\xfe"], pa.binary()),
        }
    )
    records = read(write(table, tmp_path / "bad.parquet"), start=10)

    assert records[0].record == {"orderId": "O1", "blob": "ok"}
    assert records[1].record is None
    assert records[1].error is not None
    assert records[1].error.startswith("row 2: column at: a time of day value cannot be sent to Klar")
    assert '"orderId": "O2"' in str(records[1].raw)
    assert records[2].error is not None
    assert records[2].error.startswith("row 3: column blob: binary value is not UTF-8 text")
    assert [r.position for r in records] == [10, 11, 12]


def test_rows_are_numbered_across_row_groups_and_batches(tmp_path: Path) -> None:
    rows = BATCH_ROWS * 2 + 37
    table = pa.table({"orderId": [f"O{i}" for i in range(rows)], "transactionCosts": list(range(rows))})
    records = read(write(table, tmp_path / "many.parquet", row_group_size=700), start=5)

    assert len(records) == rows
    assert [r.line for r in records] == list(range(1, rows + 1))
    assert [r.position for r in records] == list(range(5, rows + 5))
    assert records[-1].record == {"orderId": f"O{rows - 1}", "transactionCosts": rows - 1}
    shown = where(records[1499].position, records[1499].source, records[1499].line)
    assert shown == "row 1500 of many.parquet"


def test_a_file_that_is_not_parquet_says_so(tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    path.write_bytes(b'{"id": "not parquet"}\n')

    with pytest.raises(KlarSourceError) as caught:
        read(path, start=3)

    assert str(caught.value).startswith("orders.parquet, before its first row: not a readable Parquet file (")
    assert str(caught.value).endswith("The rest of orders.parquet was not read.")
    assert (caught.value.source, caught.value.position) == ("orders.parquet", 3)


def test_a_file_broken_inside_names_the_row_reached(tmp_path: Path) -> None:
    rows = BATCH_ROWS * 3
    table = pa.table({"orderId": [f"O{i:06d}" for i in range(rows)]})
    data = bytearray(write(table, tmp_path / "ok.parquet", row_group_size=BATCH_ROWS).read_bytes())
    meta = pq.ParquetFile(tmp_path / "ok.parquet").metadata
    # Overwrite the pages of the last row group's column with garbage; the footer stays readable.
    column = meta.row_group(2).column(0)
    begin = column.dictionary_page_offset or column.data_page_offset
    data[begin : begin + column.total_compressed_size] = b"\x00" * column.total_compressed_size
    path = tmp_path / "broken.parquet"
    path.write_bytes(bytes(data))

    with path.open("rb") as stream:
        reader = iter_parquet(stream, "broken.parquet", 0)
        read_before = [next(reader) for _ in range(BATCH_ROWS * 2)]
        with pytest.raises(KlarSourceError) as caught:
            next(reader)

    assert read_before[-1].record == {"orderId": f"O{BATCH_ROWS * 2 - 1:06d}"}
    message = str(caught.value)
    assert message.startswith(f"broken.parquet, after row {BATCH_ROWS * 2}: cannot read the file (")
    assert message.endswith("The rest of broken.parquet was not read.")
    assert caught.value.position == BATCH_ROWS * 2


def test_paths_globs_and_object_storage(tmp_path: Path, memory_fs: Any) -> None:
    for day in (1, 2):
        table = pa.table({"orderId": [f"D{day}-{i}" for i in range(3)], "transactionCosts": [1.5] * 3})
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        memory_fs.pipe(f"/exports/day{day}.parquet", buffer.getvalue())
    memory_fs.pipe("/exports/_SUCCESS", b"")

    source = iter_path("memory://exports/*.parquet", resource="transaction-costs")
    records = list(source)

    assert source.files == ["memory://exports/day1.parquet", "memory://exports/day2.parquet"]
    assert [r.record["orderId"] for r in records] == ["D1-0", "D1-1", "D1-2", "D2-0", "D2-1", "D2-2"]
    assert [(r.position, r.line) for r in records][2:4] == [(2, 3), (3, 1)]
    assert detect_format("x.PARQUET") == ("parquet", False)
    assert detect_format("export_000", "parquet") == ("parquet", False)


def test_a_gzipped_parquet_file_is_refused_before_reading(tmp_path: Path) -> None:
    (tmp_path / "orders.parquet.gz").write_bytes(b"\x1f\x8b")

    with pytest.raises(KlarConfigurationError, match=r"compresses its own pages .* store it as plain"):
        iter_path(tmp_path / "orders.parquet.gz")


def test_without_pyarrow_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(pa.table({"id": ["A"]}), tmp_path / "orders.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)

    with pytest.raises(KlarConfigurationError, match=r"pip install 'airflow-provider-klar\[parquet\]'"):
        iter_path(tmp_path / "orders.parquet")


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_realistic_orders_read_back_as_written_and_validate(tmp_path: Path) -> None:
    from airflow_provider_klar.models import RecordValidator
    from airflow_provider_klar.sandbox.fake_data import fake_orders

    orders = list(fake_orders(300, seed=5))
    # pa.array infers one struct type from every order's keys (from_pylist would read the first only).
    table = pa.Table.from_struct_array(pa.array(orders))
    path = write(table, tmp_path / "orders.parquet", row_group_size=128)
    validator = RecordValidator("orders", "07.2025", strict=True)

    records = [src.record for src in iter_path(path)]

    # Fields missing from some orders are null columns in Parquet: they come back left out, as sent.
    assert records == [_without_nulls(order) for order in orders]
    assert all(validator.validate(record).valid for record in records)


@pytest.mark.timeout(600)
def test_memory_stays_flat_over_many_row_groups(tmp_path: Path) -> None:
    from tests.benchmarks.bench_parquet import measure

    # 10 row groups of 2,000 orders, read, validated and encoded in a fresh process.
    figures = measure(20_000, 2_000, tmp_path, distinct=2_000)

    assert figures["records"] == figures["valid"] == 20_000
    samples = figures["rss_by_row_group_mb"]
    assert len(samples) == 10
    # After the first row group (imports, caches) the process holds what one slice needs, not more per
    # row group read: the whole file as Python objects would be hundreds of MB.
    assert max(samples[1:]) - samples[0] < 20, samples
