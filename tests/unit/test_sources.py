"""Source readers: every format with and without gzip, globs, folders, object storage, malformed lines."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pydantic
import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_klar.exceptions import KlarConfigurationError, KlarSourceError, KlarSourceNotFoundError
from airflow_provider_klar.upload import SourceRecord, detect_format, iter_path, iter_records, resolve_paths
from airflow_provider_klar.upload import sources as sources_module
from airflow_provider_klar.upload._csv import parse_number
from airflow_provider_klar.upload.sources import display_name, iter_stream, storage_conn_id
from tests.airflow_compat import attach

ORDERS = [
    {"id": f"ORD-{i}", "currency": "EUR", "totalAmountGross": 10.5 + i, "quantity": i} for i in range(5)
]


def read_until_broken(source: Iterator[SourceRecord]) -> tuple[list[SourceRecord], KlarSourceError]:
    """Read ``source`` until it raises ``KlarSourceError``; return what came before and the error."""
    items: list[SourceRecord] = []
    try:
        for item in source:
            items.append(item)
    except KlarSourceError as error:
        return items, error
    raise AssertionError(f"read {len(items)} records and no KlarSourceError")


def encode(records: list[dict[str, Any]], fmt: str) -> bytes:
    if fmt == "jsonl":
        return b"".join(json.dumps(r).encode() + b"\n" for r in records)
    if fmt == "json":
        return json.dumps(records, indent=2).encode()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue().encode()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def records_of(items: list[SourceRecord]) -> list[Any]:
    return [item.record for item in items]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("fmt", ["jsonl", "ndjson", "json"])
def test_json_formats_read_every_record_with_types_kept(tmp_path: Path, fmt: str, gz: bool) -> None:
    name = f"orders.{fmt}" + (".gz" if gz else "")
    path = write(tmp_path / name, encode(ORDERS, "json" if fmt == "json" else "jsonl"))

    items = list(iter_path(str(path)))

    assert records_of(items) == ORDERS
    assert [i.position for i in items] == [0, 1, 2, 3, 4]
    assert all(i.ok and i.source == str(path) for i in items)
    # ints stay ints and floats floats (no Decimal from ijson)
    assert [type(i.record["quantity"]) for i in items] == [int] * 5
    assert [type(i.record["totalAmountGross"]) for i in items] == [float] * 5
    expected_lines = [0, 1, 2, 3, 4] if fmt == "json" else [1, 2, 3, 4, 5]
    assert [i.line for i in items] == expected_lines


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_csv_types_numbers_from_the_model_and_keeps_ids_as_strings(tmp_path: Path, gz: bool) -> None:
    text = (
        "orderId,lineItemId,sku,productCogs,note\n"
        "00123,LI-1,,12,keep me\n"
        '"4567",,SKU-9,7.25,\n'
        "890,LI-3,SKU-3, 3 ,x\n"
    )
    path = write(tmp_path / ("cogs.csv" + (".gz" if gz else "")), text.encode())

    items = list(iter_path(path, resource="cogs"))

    assert records_of(items) == [
        {"orderId": "00123", "lineItemId": "LI-1", "productCogs": 12, "note": "keep me"},
        {"orderId": "4567", "sku": "SKU-9", "productCogs": 7.25},
        {"orderId": "890", "lineItemId": "LI-3", "sku": "SKU-3", "productCogs": 3, "note": "x"},
    ]
    assert type(items[0].record["productCogs"]) is int
    assert type(items[1].record["productCogs"]) is float
    assert [i.line for i in items] == [2, 3, 4]


def test_csv_bad_rows_are_error_records_with_their_line_and_the_good_rows_still_come(tmp_path: Path) -> None:
    text = (
        "\ufefforderId,transactionCosts\n"  # a BOM, as spreadsheet programs write
        "A-1,1.5\n"
        "A-2,1,5\n"  # a decimal comma makes a third column
        "\n"
        "A-3,abc\n"
        "A-4,nan\n"
        ",\n"
        '"A-5","2"\n'
        '"A-6\nsplit",3\n'  # a quoted cell spanning two lines
        "A-7,4\n"
    )
    path = write(tmp_path / "tx.csv", text.encode())

    items = list(iter_path(path, resource="transaction-costs"))

    assert [(i.line, i.ok) for i in items] == [
        (2, True),
        (3, False),
        (5, False),
        (6, False),
        (8, True),
        (9, True),
        (11, True),
    ]
    assert items[1].error == "line 3: expected 2 columns (orderId, transactionCosts), got 3"
    assert items[1].raw == "A-2,1,5"
    assert items[2].error == "line 5: column 'transactionCosts': 'abc' is not a number"
    assert "'nan' is not a number" in str(items[3].error)
    assert items[6].record == {"orderId": "A-7", "transactionCosts": 4}
    assert items[5].record == {"orderId": "A-6\nsplit", "transactionCosts": 3}
    assert [i.position for i in items] == list(range(7))


def test_csv_header_problems_are_reported_at_line_one(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", b"orderId,orderId,x\n1,2,3\n")
    items, error = read_until_broken(iter_path(path, resource="cogs"))
    assert items == []
    assert str(error) == (
        f"{path}, line 1 (the header): the header has duplicate columns ['orderId']. "
        f"The rest of {path} was not read."
    )
    assert (error.source, error.line, error.position) == (str(path), 1, 0)


def test_csv_skips_blank_lines_before_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", b"\n,\norderId,totalLogisticsCosts\nX,2\n")
    [item] = list(iter_path(path, resource="logistics-costs"))
    assert (item.line, item.record) == (4, {"orderId": "X", "totalLogisticsCosts": 2})


def test_csv_is_refused_for_a_nested_resource_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", b"id\n1\n")
    with pytest.raises(KlarConfigurationError, match=r"CSV files are only for the flat resources.*orders"):
        iter_path(path, resource="orders")


def test_malformed_json_lines_are_error_records_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    data = (
        b'{"id": "A"}\n'
        b"\n"
        b"   \r\n"
        b'{"id": "B",, }\n'
        b'["not", "an", "object"]\n'
        b"42\n"
        b'{"id": "C"}\r\n'
        b'\xff{"id": "D"}\n'
        b'{"id": "E"}'  # no newline at the end
    )
    path = write(tmp_path / "mixed.jsonl", data)

    items = list(iter_path(path))

    assert [(i.position, i.line, i.ok) for i in items] == [
        (0, 1, True),
        (1, 4, False),
        (2, 5, False),
        (3, 6, False),
        (4, 7, True),
        (5, 8, False),
        (6, 9, True),
    ]
    assert items[1].error == "line 4: invalid JSON: key must be a string at column 12"
    assert items[1].raw == '{"id": "B",, }'
    assert items[2].error == "line 5: expected a JSON object, got an array"
    assert items[3].error == "line 6: expected a JSON object, got a number"
    assert items[5].error == "line 8: byte 0xFF at byte 1 of the line is not UTF-8; save the file as UTF-8"
    assert records_of([items[0], items[4], items[6]]) == [{"id": "A"}, {"id": "C"}, {"id": "E"}]


def test_json_lines_take_a_bom_refuse_nan_and_keep_big_numbers(tmp_path: Path) -> None:
    data = (
        b'\xef\xbb\xbf{"id": "A", "big": 123456789012345678901234567890}\n'
        b'{"id": "B", "v": NaN}\n'
        b'{"v": "\xff"}\n'
    )
    path = write(tmp_path / "bom.jsonl", data)

    first, nan, bad_text = iter_path(path)

    assert first.record == {"id": "A", "big": 123456789012345678901234567890}
    assert nan.error == (
        "line 2: NaN is not a JSON number (at column 18); Klar cannot store it: "
        "write null or leave the field out"
    )
    assert bad_text.error == "line 3: byte 0xFF at byte 8 of the line is not UTF-8; save the file as UTF-8"
    assert bad_text.raw == '{"v": "\ufffd"}'


def test_a_json_array_cut_midway_yields_the_records_before_then_raises(tmp_path: Path) -> None:
    many = [{"id": f"ORD-{i}", "n": i} for i in range(3000)]  # larger than one read chunk
    data = json.dumps(many).encode()
    path = write(tmp_path / "cut.json.gz", data[: len(data) - 20])

    good, error = read_until_broken(iter_path(path))

    assert len(good) >= 2990
    assert records_of(good) == many[: len(good)]
    assert (error.line, error.position, error.source) == (len(good), len(good), str(path))
    assert str(error) == (
        f"{path}, item {len(good)}: invalid JSON: parse error: premature EOF. "
        f"The rest of {path} was not read."
    )


def test_a_json_array_with_a_syntax_error_in_its_first_chunk_keeps_the_earlier_records(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "bad.json", b'[{"id": "A"}, 5, {"id": "B"} x {"id": "C"}]')

    items, error = read_until_broken(iter_path(path))

    assert [(i.line, i.record) for i in items] == [(0, {"id": "A"}), (1, None), (2, {"id": "B"})]
    assert items[1].error == "item 1: expected a JSON object, got a number"
    assert error.line == 3
    assert str(error).startswith(f"{path}, item 3: invalid JSON: lexical error: invalid char in json text.")


def test_a_json_file_holding_one_object_is_one_record_and_a_bom_is_skipped(tmp_path: Path) -> None:
    one = write(tmp_path / "one.json", b'\xef\xbb\xbf\n  {"id": "X", "v": 1}')
    scalar = write(tmp_path / "s.json", b'"abc"')
    empty = write(tmp_path / "empty.json", b"  \n")

    assert records_of(list(iter_path(one))) == [{"id": "X", "v": 1}]
    items, error = read_until_broken(iter_path(scalar))
    assert items == []
    assert str(error) == (
        f"{scalar}, item 0: expected a JSON array of objects, found '\"abc\"'. "
        f"The rest of {scalar} was not read."
    )
    assert list(iter_path(empty)) == []


def test_a_truncated_gzip_file_raises_after_the_lines_read_whole(tmp_path: Path) -> None:
    data = gzip.compress(encode([{"id": str(i), "pad": "x" * 200} for i in range(2000)], "jsonl"))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])

    items, error = read_until_broken(iter_path(path))

    assert all(i.ok for i in items)
    assert len(items) > 100
    assert (error.line, error.position) == (items[-1].line + 1, len(items))
    assert str(error).startswith(
        f"{path}, after line {items[-1].line}: the file is not valid gzip or is cut short"
    )
    assert str(error).endswith(f"The rest of {path} was not read.")


def test_a_glob_reads_every_match_in_sorted_order_and_positions_run_on(tmp_path: Path) -> None:
    write(tmp_path / "b.jsonl", encode([{"id": "b1"}, {"id": "b2"}], "jsonl"))
    write(tmp_path / "a.jsonl.gz", encode([{"id": "a1"}], "jsonl"))
    write(tmp_path / "c.json", encode([{"id": "c1"}, {"id": "c2"}], "json"))
    write(tmp_path / "notes.txt", b"not matched")

    items = list(iter_path(str(tmp_path / "*.json*")))

    assert [i.record["id"] for i in items] == ["a1", "b1", "b2", "c1", "c2"]
    assert [i.position for i in items] == [0, 1, 2, 3, 4]
    assert [Path(i.source).name for i in items] == ["a.jsonl.gz", "b.jsonl", "b.jsonl", "c.json", "c.json"]


def test_a_folder_means_every_data_file_below_it_skipping_bookkeeping_files(tmp_path: Path) -> None:
    write(tmp_path / "day=2" / "part-0.jsonl", encode([{"id": "2a"}], "jsonl"))
    write(tmp_path / "day=1" / "part-1.jsonl", encode([{"id": "1b"}], "jsonl"))
    write(tmp_path / "day=1" / "part-0.jsonl", encode([{"id": "1a"}], "jsonl"))
    write(tmp_path / "_SUCCESS", b"")
    write(tmp_path / "day=1" / ".part-0.jsonl.crc", b"crc")

    paths = resolve_paths(tmp_path)

    assert [display_name(p) for p in paths] == [
        str(tmp_path / "day=1" / "part-0.jsonl"),
        str(tmp_path / "day=1" / "part-1.jsonl"),
        str(tmp_path / "day=2" / "part-0.jsonl"),
    ]
    assert [i.record["id"] for i in iter_path(tmp_path)] == ["1a", "1b", "2a"]


def test_recursive_glob_and_file_urls(tmp_path: Path) -> None:
    write(tmp_path / "x" / "y" / "deep.jsonl", b'{"id": "d"}\n')
    write(tmp_path / "top.jsonl", b'{"id": "t"}\n')

    found = [display_name(p) for p in resolve_paths(f"file://{tmp_path}/**/*.jsonl")]

    assert found == [str(tmp_path / "top.jsonl"), str(tmp_path / "x" / "y" / "deep.jsonl")]


def test_nothing_to_read_is_a_clear_error_naming_the_pattern(tmp_path: Path) -> None:
    with pytest.raises(KlarSourceNotFoundError, match=r"No file matches the pattern '.*/\*\.jsonl'"):
        iter_path(str(tmp_path / "*.jsonl"))
    with pytest.raises(KlarSourceNotFoundError, match=r"No file at '.*missing\.jsonl'"):
        iter_path(tmp_path / "missing.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KlarSourceNotFoundError, match=r"folder '.*empty' holds no data file"):
        iter_path(tmp_path / "empty")


def test_an_unknown_extension_fails_before_reading_unless_file_format_says(tmp_path: Path) -> None:
    path = write(tmp_path / "export.txt", b'{"id": "1"}\n')
    with pytest.raises(KlarConfigurationError, match=r"Cannot tell the format of .*export\.txt"):
        iter_path(path)
    assert records_of(list(iter_path(path, file_format="jsonl"))) == [{"id": "1"}]


@pytest.mark.parametrize(
    ("name", "file_format", "expected"),
    [
        ("a.jsonl", None, ("jsonl", False)),
        ("A.NDJSON.GZ", None, ("jsonl", True)),
        ("a.json", None, ("json", False)),
        ("s3://b/k/a.json.gz", None, ("json", True)),
        ("a.csv.gz", None, ("csv", True)),
        ("a.txt", "ndjson", ("jsonl", False)),
        ("a.gz", "csv", ("csv", True)),
        ("blob", "jsonl.gz", ("jsonl", True)),
    ],
)
def test_detect_format(name: str, file_format: str | None, expected: tuple[str, bool]) -> None:
    assert detect_format(name, file_format) == expected


def test_detect_format_refuses_an_unknown_file_format() -> None:
    with pytest.raises(KlarConfigurationError, match="Unknown file_format 'xml'"):
        detect_format("a.jsonl", "xml")


def test_object_storage_memory_paths_glob_and_folders(memory_fs: fsspec.AbstractFileSystem) -> None:
    memory_fs.pipe("/bucket/exports/2.jsonl", b'{"id": "m2"}\n')
    memory_fs.pipe("/bucket/exports/1.jsonl.gz", gzip.compress(b'{"id": "m1"}\n'))
    memory_fs.pipe("/bucket/exports/costs.csv", b"orderId,totalLogisticsCosts\n7,1.25\n")

    by_glob = list(iter_path("memory://bucket/exports/*.jsonl*"))
    by_folder = list(iter_path(ObjectStoragePath("memory://bucket/exports/"), resource="logistics-costs"))

    assert records_of(by_glob) == [{"id": "m1"}, {"id": "m2"}]
    assert [i.source for i in by_glob] == [
        "memory://bucket/exports/1.jsonl.gz",
        "memory://bucket/exports/2.jsonl",
    ]
    assert records_of(by_folder) == [
        {"id": "m1"},
        {"id": "m2"},
        {"orderId": "7", "totalLogisticsCosts": 1.25},
    ]


def test_the_connection_id_is_kept_on_the_paths_but_not_shown(memory_fs: fsspec.AbstractFileSystem) -> None:
    memory_fs.pipe("/bucket/a.jsonl", b"{}\n")
    attach("memory", conn_id="my_store", fs=memory_fs)
    [path] = resolve_paths("memory://bucket/a.jsonl", conn_id="my_store")
    assert storage_conn_id(path) == "my_store"
    assert display_name(path) == "memory://bucket/a.jsonl"
    assert display_name(ObjectStoragePath("s3://my_store@bucket/key.jsonl")) == "s3://bucket/key.jsonl"
    assert (
        display_name(ObjectStoragePath("https://u:pw@example.com/x.jsonl")) == "https://example.com/x.jsonl"
    )


def test_a_scheme_without_a_filesystem_says_which_provider_to_install() -> None:
    # gcsfs and the Google provider are not installed here: fsspec knows the scheme, Airflow has no fs.
    with pytest.raises(KlarConfigurationError, match=r"No filesystem for gs://.*-google for gs://"):
        resolve_paths("gs://bucket/orders.jsonl")
    with pytest.raises(
        # Airflow 3 refuses the URL at once; Airflow 2.11 when it looks for the filesystem.
        KlarConfigurationError,
        match=r"Cannot use 'nosuchfs://bucket/o.jsonl' as a path|No filesystem for nosuchfs://",
    ) as err:
        resolve_paths("nosuchfs://user:secret@bucket/o.jsonl")
    assert "secret" not in str(err.value)


class Order(pydantic.BaseModel):
    id: str


def test_iter_records_over_a_list_a_generator_and_models() -> None:
    listed = list(iter_records([{"id": "1"}, {"id": "2"}]))
    generated = list(iter_records({"id": str(i)} for i in range(3)))
    models = list(iter_records([Order(id="m")]))

    assert [(i.position, i.line, i.source, i.record) for i in listed] == [
        (0, 0, "records", {"id": "1"}),
        (1, 1, "records", {"id": "2"}),
    ]
    assert [i.record["id"] for i in generated] == ["0", "1", "2"]
    assert models[0].record == Order(id="m")
    assert models[0].ok


def test_iter_records_consumes_a_generator_one_item_at_a_time() -> None:
    pulled: list[int] = []

    def source() -> Iterator[dict[str, int]]:
        for i in range(1_000_000):
            pulled.append(i)
            yield {"i": i}

    reader = iter_records(source())
    assert pulled == []  # nothing read before the first record is asked for
    first = next(reader)
    assert first.record == {"i": 0}
    assert pulled == [0]


def test_iter_records_flattens_lists_of_records_one_level() -> None:
    items = list(iter_records([[{"id": "a"}, {"id": "b"}], [], ({"id": "c"},), {"id": "d"}, [[{"id": "e"}]]]))
    assert [(i.position, i.line, i.record) for i in items[:4]] == [
        (0, 0, {"id": "a"}),
        (1, 1, {"id": "b"}),
        (2, 2, {"id": "c"}),
        (3, 3, {"id": "d"}),
    ]
    assert items[4].error == "item 4: expected a dict or a pydantic model, got list"


def test_iter_records_marks_items_that_are_not_records() -> None:
    items = list(iter_records([{"id": "1"}, "ORD-2", None, 5]))
    assert [i.ok for i in items] == [True, False, False, False]
    assert items[1].error == "item 1: expected a dict or a pydantic model, got str"
    assert items[1].raw == "'ORD-2'"


@pytest.mark.parametrize("bad", [{"id": "1"}, "orders.jsonl", None, 5, Order(id="x")])
def test_iter_records_refuses_something_that_is_not_a_collection_of_records(bad: Any) -> None:
    with pytest.raises(KlarConfigurationError, match="records must be an iterable of records"):
        iter_records(bad)


class CountingStream(io.RawIOBase):
    """A raw stream over bytes that remembers how far it was read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.read_so_far = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._data.readinto(buffer)
        self.read_so_far += n
        return n


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_readers_are_lazy_the_first_record_reads_only_the_start_of_a_large_gzip_file(fmt: str) -> None:
    # Memory stays flat because a reader holds one record: prove it by how little of the stream the
    # first record needs, not by timing or RSS.
    noise = random.Random(7)
    rows = [
        {"orderId": f"ORD-{i:07d}", "transactionCosts": i / 7, "pad": f"{noise.getrandbits(400):x}"}
        for i in range(20_000)
    ]
    compressed = gzip.compress(encode(rows, fmt), compresslevel=1)
    stream = CountingStream(compressed)

    reader = iter_stream(stream, fmt, gzipped=True, resource="transaction-costs")  # type: ignore[arg-type]
    assert stream.read_so_far == 0
    first = next(reader)

    assert first.record["orderId"] == "ORD-0000000"
    assert len(compressed) > 1_000_000
    assert stream.read_so_far < len(compressed) / 10
    second = next(reader)
    assert second.record["orderId"] == "ORD-0000001"
    rest = sum(1 for _ in reader)
    assert rest == len(rows) - 2
    assert stream.read_so_far == len(compressed)


def test_iter_path_opens_files_only_when_iterated(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", b'{"id": "1"}\n')
    reader = iter_path(path)
    path.unlink()  # the check happened at the call; reading starts at the first next()
    with pytest.raises(KlarSourceError, match="before its first record: reading the file failed") as raised:
        next(reader)
    assert isinstance(raised.value.__cause__, FileNotFoundError)


def test_each_file_is_reported_to_hook_lineage_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.providers.common.compat.sdk as compat_sdk

    reported: list[str] = []

    class Collector:
        def add_input_asset(self, context: Any, uri: str) -> None:
            reported.append(uri)

    monkeypatch.setattr(compat_sdk, "get_hook_lineage_collector", Collector, raising=False)
    big = encode([{"id": str(i), "pad": "y" * 300} for i in range(3000)], "jsonl")
    write(tmp_path / "a.jsonl.gz", big)
    write(tmp_path / "b.json", b'[{"id": "b"}]')

    assert sum(1 for _ in iter_path(tmp_path)) == 3001
    assert reported == [str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.json")]


def test_the_file_source_names_its_files_and_fingerprints_them(tmp_path: Path) -> None:
    write(tmp_path / "b.jsonl", b'{"id": "b"}\n')
    write(tmp_path / "c.jsonl", b'{"id": "c"}\n')
    pattern = str(tmp_path / "*.jsonl")

    source = iter_path(pattern)
    same = iter_path(pattern)
    assert source.files == [str(tmp_path / "b.jsonl"), str(tmp_path / "c.jsonl")]
    assert source.fingerprint == same.fingerprint
    assert len(source.fingerprint) == 16

    # A file sorted in front shifts every position after it: the fingerprint must change.
    write(tmp_path / "a.jsonl", b'{"id": "a"}\n')
    added = iter_path(pattern)
    assert added.fingerprint != source.fingerprint
    # So must a file that changed size, or was rewritten at the same size.
    write(tmp_path / "a.jsonl", b'{"id": "a", "more": 1}\n')
    resized = iter_path(pattern).fingerprint
    assert resized != added.fingerprint
    write(tmp_path / "a.jsonl", b'{"id": "A", "more": 2}\n')
    os.utime(tmp_path / "a.jsonl", (1_000_000, 1_000_000))
    assert iter_path(pattern).fingerprint != resized

    assert [i.record["id"] for i in source] == ["b", "c"]


def test_closing_the_file_source_closes_the_open_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "a.jsonl", b'{"id": "1"}\n{"id": "2"}\n')
    opened: list[Any] = []
    real_open = sources_module._open

    def spy(path: Any) -> Any:
        stream = real_open(path)
        opened.append(stream)
        return stream

    monkeypatch.setattr(sources_module, "_open", spy)
    source = iter_path(tmp_path / "a.jsonl")
    assert next(source).record == {"id": "1"}
    assert not opened[0].closed
    source.close()
    assert opened[0].closed


def _parse_number_by_trying_int_first(text: str) -> int | float:
    """The obvious way to read a CSV number (what ``parse_number`` did before it stopped raising)."""
    stripped = text.strip()
    if "_" in stripped:
        raise ValueError(text)
    try:
        return int(stripped)
    except ValueError:
        value = float(stripped)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789.eE+-_ xinfaINFAty,\u0661\u00b2", max_size=10),
        st.integers().map(str),
        st.floats().map(repr),
        st.text(max_size=6),
    )
)
def test_csv_numbers_read_as_the_obvious_way_reads_them(text: str) -> None:
    try:
        expected: int | float | None = _parse_number_by_trying_int_first(text)
    except ValueError:
        expected = None
    try:
        got: int | float | None = parse_number(text)
    except ValueError:
        got = None
    assert got == expected
    assert type(got) is type(expected)
