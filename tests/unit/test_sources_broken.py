"""Broken sources: a bad line costs that line at its true number; an unreadable rest raises, loudly."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_klar.results import FieldError
from airflow_provider_klar.upload import RejectedWriter, SourceRecord, iter_path, iter_records
from airflow_provider_klar.upload import sources as sources_module
from airflow_provider_klar.upload.sources import iter_stream
from tests.unit.test_sources import read_until_broken, records_of, write

BOM = b"\xef\xbb\xbf"


def cogs_csv(rows: range, *, header: bool = True) -> list[bytes]:
    lines = [b"orderId,lineItemId,productCogs\n"] if header else []
    return lines + [f"O-{i},L-{i},{i}.5\n".encode() for i in rows]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_a_csv_byte_that_is_not_utf8_rejects_its_row_alone_at_its_true_line(tmp_path: Path, gz: bool) -> None:
    lines = cogs_csv(range(3234))
    # Line 1,502 of the file (the header is line 1) gets a Latin-1 byte, as a mis-encoded export has.
    lines[1501] = b"O-1500,L-1500,1.5,caf\xe9\n".replace(b",1.5,caf\xe9", b"caf\xe9,1.5")
    path = write(tmp_path / ("cogs.csv.gz" if gz else "cogs.csv"), b"".join(lines))

    items = list(iter_path(path, resource="cogs"))

    assert len(items) == 3234
    bad = [i for i in items if not i.ok]
    assert [(b.line, b.position) for b in bad] == [(1502, 1500)]
    assert bad[0].error == "line 1502: byte 0xE9 at byte 17 of the line is not UTF-8; save the file as UTF-8"
    assert bad[0].raw == "O-1500,L-1500caf\ufffd,1.5"
    assert [i.line for i in items if i.ok] == [n for n in range(2, 3236) if n != 1502]
    assert items[-1].record == {"orderId": "O-3233", "lineItemId": "L-3233", "productCogs": 3233.5}


def test_csv_line_numbers_stay_true_after_quoted_cells_that_span_lines(tmp_path: Path) -> None:
    data = (
        b"orderId,lineItemId,productCogs\n"
        b'"O-1","L\n1\n",1\n'  # lines 2-4: one row
        b'"O-2","L-\xff\n2",2\n'  # lines 5-6: one row, a bad byte on its first line
        b'"O-3","L-3\n\xfe",3\n'  # lines 7-8: one row, a bad byte on its second line
        b"O-4,L-4,4\n"  # line 9
    )
    path = write(tmp_path / "c.csv", data)

    items = list(iter_path(path, resource="cogs"))

    assert [(i.line, i.ok) for i in items] == [(2, True), (5, False), (7, False), (9, True)]
    assert items[0].record == {"orderId": "O-1", "lineItemId": "L\n1\n", "productCogs": 1}
    assert items[1].error is not None
    assert items[1].error.startswith("line 5: byte 0xFF at byte 10 ")
    # The row starts at line 7; the bad byte is on line 8, and the reason says so.
    assert items[2].error is not None
    assert items[2].error.startswith("line 8: byte 0xFE at byte 1 ")
    assert items[3].record == {"orderId": "O-4", "lineItemId": "L-4", "productCogs": 4}


def test_a_csv_bom_opening_the_file_is_skipped_and_one_further_on_is_named(tmp_path: Path) -> None:
    # Two exports concatenated: the second one's BOM and header land on line 4.
    data = BOM + b"".join(cogs_csv(range(2))) + BOM + b"".join(cogs_csv(range(2, 4)))
    path = write(tmp_path / "c.csv", data)

    items = list(iter_path(path, resource="cogs"))

    assert [(i.line, i.ok) for i in items] == [(2, True), (3, True), (4, False), (5, True), (6, True)]
    assert items[0].record == {"orderId": "O-0", "lineItemId": "L-0", "productCogs": 0.5}
    assert items[2].error == (
        "line 4: starts with a byte order mark (BOM, bytes EF BB BF), as where files were concatenated; "
        "only the first line of a file may; remove it"
    )


def test_a_json_lines_bom_further_on_is_named_and_the_file_read_on(tmp_path: Path) -> None:
    data = BOM + b'{"id": "A"}\n' + BOM + b'{"id": "B"}\n{"id": "C"}\n'
    path = write(tmp_path / "o.jsonl", data)

    a, b, c = iter_path(path)

    assert (a.record, c.record, c.line) == ({"id": "A"}, {"id": "C"}, 3)
    assert b.line == 2
    assert b.error is not None
    assert b.error.startswith("line 2: starts with a byte order mark (BOM")
    assert b.raw == '\ufeff{"id": "B"}'


def test_a_csv_quote_that_never_closes_raises_instead_of_swallowing_the_rest(tmp_path: Path) -> None:
    lines = cogs_csv(range(100))
    lines[40] = b'O-39,"L-39,39.5\n'  # line 41: the quote never closes; the parser reads to the end
    path = write(tmp_path / "c.csv", b"".join(lines))

    items, error = read_until_broken(iter_path(path, resource="cogs"))

    assert [i.line for i in items] == list(range(2, 41))
    assert (error.line, error.position) == (41, 39)
    assert str(error).startswith(f"{path}, line 41: bad CSV row:")
    assert "a quoted cell opened here never closes" in str(error)
    assert str(error).endswith(f"The rest of {path} was not read.")


def test_a_csv_header_that_is_not_utf8_raises(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", b"orderId,lineItemId,productC\xf6gs\nO-1,L-1,1\n")
    items, error = read_until_broken(iter_path(path, resource="cogs"))
    assert items == []
    assert str(error).startswith(
        f"{path}, line 1 (the header): byte 0xF6 at byte 28 of the line is not UTF-8"
    )


def test_a_truncated_csv_gzip_raises_after_the_rows_read(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(cogs_csv(range(5000))))
    path = tmp_path / "c.csv.gz"
    path.write_bytes(data[: len(data) // 2])

    items, error = read_until_broken(iter_path(path, resource="cogs"))

    assert len(items) > 100
    assert all(i.ok for i in items)
    assert error.position == len(items)
    assert "not valid gzip or is cut short" in str(error)


class FailingStream(io.RawIOBase):
    """A file object whose storage fails after ``limit`` bytes, as an object store's connection can."""

    def __init__(self, data: bytes, limit: int) -> None:
        self._data = io.BytesIO(data)
        self._limit = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._data.tell() >= self._limit:
            raise OSError(104, "Connection reset by peer")
        chunk = self._data.read(min(len(buffer), self._limit - self._data.tell()))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def failing(data: bytes, limit: int) -> IO[bytes]:
    return io.BufferedReader(FailingStream(data, limit), buffer_size=1024)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_a_storage_error_while_reading_raises_naming_the_file(fmt: str) -> None:
    if fmt == "csv":
        data = b"".join(cogs_csv(range(2000)))
    else:
        rows = [f'{{"id": "O-{i}", "pad": "{"x" * 20}"}}' for i in range(2000)]
        data = ("\n".join(rows) if fmt == "jsonl" else "[" + ",\n".join(rows) + "]").encode()

    stream = iter_stream(failing(data, len(data) // 2), fmt, source="s3://bucket/o", resource="cogs")
    items, error = read_until_broken(stream)

    # (ijson parses ahead: items in the chunk that was read when the next read failed count as unread.)
    assert 50 < len(items) < 2000
    assert all(i.ok for i in items)
    assert [i.record["id"] if fmt != "csv" else i.record["orderId"] for i in items] == [
        f"O-{n}" for n in range(len(items))
    ]
    assert error.source == "s3://bucket/o"
    assert error.position == len(items)
    assert "reading the file failed (ConnectionResetError: [Errno 104] Connection reset by peer)" in str(
        error
    )
    assert str(error).endswith("The rest of s3://bucket/o was not read.")
    assert isinstance(error.__cause__, OSError)


def test_a_broken_file_in_a_glob_is_named_with_the_files_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c", "d"):
        write(tmp_path / f"{name}.jsonl", b"".join(f'{{"id": "{name}{i}"}}\n'.encode() for i in range(300)))
    real_open = sources_module._open

    def open_b_fails(path: Any) -> IO[bytes]:
        stream = real_open(path)
        if not str(path).endswith("b.jsonl"):
            return stream
        data = stream.read()
        stream.close()
        return failing(data, 2000)

    monkeypatch.setattr(sources_module, "_open", open_b_fails)

    items, error = read_until_broken(iter_path(str(tmp_path / "*.jsonl")))

    b = str(tmp_path / "b.jsonl")
    assert [i.record["id"] for i in items[:300]] == [f"a{i}" for i in range(300)]
    assert {i.source for i in items[300:]} == {b}
    assert error.source == b
    assert error.position == len(items)
    assert str(error).startswith(f"{b}, after line {len(items) - 300}: reading the file failed")
    assert str(error).endswith(
        f"The rest of {b} was not read. "
        f"The 2 files after it ({tmp_path / 'c.jsonl'}, {tmp_path / 'd.jsonl'}) were not read either."
    )


def test_a_file_that_went_away_after_the_listing_raises(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", b'{"id": "a"}\n')
    write(tmp_path / "b.jsonl", b'{"id": "b"}\n')
    source = iter_path(str(tmp_path / "*.jsonl"))
    (tmp_path / "b.jsonl").unlink()

    items, error = read_until_broken(source)

    assert records_of(items) == [{"id": "a"}]
    assert error.source == str(tmp_path / "b.jsonl")
    assert "FileNotFoundError" in str(error)


def test_a_failing_records_iterable_passes_its_error_on_after_the_records_before() -> None:
    def extract() -> Iterator[dict[str, Any]]:
        yield {"id": "A"}
        yield {"id": "B"}
        raise ConnectionError("the warehouse went away")

    seen: list[SourceRecord] = []
    with pytest.raises(ConnectionError, match="the warehouse went away"):
        seen.extend(iter_records(extract()))
    assert records_of(seen) == [{"id": "A"}, {"id": "B"}]


def test_a_rejected_file_reads_back_as_the_records_it_holds(tmp_path: Path) -> None:
    source = write(
        tmp_path / "orders.jsonl",
        b'{"id": "A", "createdAt": 17}\n'  # rejected by the models, say
        b'{"id": "B",, }\n'  # malformed
        + BOM
        + b'{"id": "C"}\n'  # a BOM further on
        + b'{"id": "D", "n": 1e400}\n',  # infinity
    )
    target = tmp_path / "rejected.jsonl"
    with RejectedWriter(target) as writer:
        for item in iter_path(source):
            if item.ok:
                errors = [FieldError("n", "must be a finite number", item.record.get("n"))]
                writer.reject(
                    position=item.position,
                    source=item.source,
                    line=item.line,
                    id=None,
                    errors=errors,
                    record=item.record,
                )
            else:
                writer.write_unreadable(item)

    back = list(iter_path(target))

    assert [(i.line, i.position) for i in back] == [(1, 0), (2, 1), (3, 2), (4, 3)]
    assert back[0].record == {"id": "A", "createdAt": 17}
    # The malformed line is still malformed until someone fixes it; it says so, with its text.
    assert back[1].error is not None
    assert "the rejected record's text is still not JSON" in back[1].error
    assert back[1].raw == '{"id": "B",, }'
    # The BOM was the concatenation's problem, not the record's.
    assert back[2].record == {"id": "C"}
    # Infinity was written as a string: the models refuse it as they refused the number.
    assert back[3].record == {"id": "D", "n": "Infinity"}
    assert all(i.raw is None for i in back if i.ok)

    fixed = target.read_text().replace('{\\"id\\": \\"B\\",, }', '{\\"id\\": \\"B\\"}')
    target.write_text(fixed)
    assert [i.record for i in iter_path(target)][1] == {"id": "B"}


@pytest.mark.parametrize("end", [b"\r", b"\r\n", b"\n"], ids=["cr", "crlf", "lf"])
def test_csv_lines_may_end_in_a_lone_carriage_return(tmp_path: Path, end: bytes) -> None:
    text = b'orderId,lineItemId,productCogs\nO-1,L-1,1\nO-2,"L\nx",2\nO-3,L-3,3\xff\nO-4,L-4,4\n'
    path = write(tmp_path / "c.csv", text.replace(b"\n", end))

    items = list(iter_path(path, resource="cogs"))

    assert [(i.line, i.ok) for i in items] == [(2, True), (3, True), (5, False), (6, True)]
    assert items[1].record == {"orderId": "O-2", "lineItemId": "L" + end.decode() + "x", "productCogs": 2}
    assert items[2].error is not None
    assert items[2].error.startswith("line 5: byte 0xFF at byte 10 ")
    assert items[3].record == {"orderId": "O-4", "lineItemId": "L-4", "productCogs": 4}


def test_a_long_malformed_json_line_is_kept_whole_for_the_rejected_file(tmp_path: Path) -> None:
    line = '{"id": "A", "note": "' + "x" * 50_000 + '",, }'
    path = write(tmp_path / "o.jsonl", line.encode() + b"\n")
    [item] = iter_path(path)
    assert item.raw == line


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    end=st.sampled_from([b"", b"\n", b"\r\n"]),
    block=st.integers(min_value=1, max_value=64),
)
def test_lines_read_in_blocks_are_the_lines_a_file_object_gives(
    lines: list[bytes], end: bytes, block: int
) -> None:
    from airflow_provider_klar.upload import _json

    data = b"\n".join(lines) + end
    original = _json._BLOCK
    _json._BLOCK = block  # tiny blocks: lines cut by a block's end, lines longer than a block
    try:
        assert list(_json.lines(io.BytesIO(data))) == list(io.BytesIO(data))
    finally:
        _json._BLOCK = original
