"""JSON array files read lazily: each item handed on as its bytes, the same records as ijson's, errors too.

Every test reads the same bytes both ways, eagerly (ijson builds each item) and lazily (msgspec splits
the array into its items' bytes, parsed afterwards as the upload parses what its one pass cannot
vouch for), and compares the records, their positions and indices, and the error that ends the read.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_klar.exceptions import KlarSourceError
from airflow_provider_klar.upload import _array, _json
from airflow_provider_klar.upload._record import UNPARSED, UNPARSED_ITEM, is_unparsed, parsed
from airflow_provider_klar.upload.sources import iter_path, iter_stream
from tests.unit.test_sources import write
from tests.unit.test_sources_broken import failing

pytestmark = pytest.mark.skipif(_array._decode_items is None, reason="msgspec is not installed")


def _comparable(src: Any) -> tuple[Any, ...]:
    # A lazily read object keeps its item's bytes (to be sent as read): the eager reader keeps none.
    raw = src.raw if isinstance(src.raw, str) else None
    return (src.position, src.source, src.line, src.record, src.error, raw)


def _read(records: Any) -> tuple[list[Any], list[tuple[Any, ...]], tuple[Any, ...] | None]:
    """Read to the end or the error: the records as yielded, as parsed, and the error's details."""
    yielded: list[Any] = []
    error = None
    try:
        for src in records:
            yielded.append(src)
    except KlarSourceError as exc:
        error = (str(exc), exc.source, exc.position, exc.line, type(exc.__cause__).__name__)
    return yielded, [_comparable(parsed(src)) for src in yielded], error


def same_both_ways(path: Path) -> tuple[list[Any], tuple[Any, ...] | None]:
    """Assert that ``path`` reads the same eagerly and lazily; return the lazy records as yielded and
    the error that ended the read."""
    _, eager, eager_error = _read(iter_path(str(path)))
    lazy_yielded, lazy, lazy_error = _read(iter_path(str(path), lazy=True))
    assert lazy == eager
    assert lazy_error == eager_error
    return lazy_yielded, lazy_error


def _unparsed(records: list[Any]) -> int:
    return sum(is_unparsed(src.record) for src in records)


ORDERS = [
    {"id": f"ORD-{i}", "n": i, "price": 10.5 + i, "ok": i % 2 == 0, "none": None, "tags": ["a", "b"]}
    for i in range(10)
]
TRICKY = [
    {"id": "A", "note": '}, {"id": "B"}, ', "x": 1},
    {"id": "B", "note": "]", "y": "[", "z": "{"},
    {"id": "C", "quote": 'say "hi", then },', "slash": "\\", "end": "\\"},
    {"id": "D", "escaped": '\\"}, ', "unicode": "Jürgen 😀 \u2028 \u00e9", "nul": "\u0000"},
    {"id": "E", "nested": [[1, [2, {"deep": [{"a": "},"}, {}]}]], [], {}], "obj": {"a": {"b": {}}}},
    {"id": "F", "float": 1.5e-7, "neg": -0.0, "big": 9223372036854775807, "small": -9223372036854775807},
    # What the splitter learns to look for between items (here '}, {"id": "ORD-'), inside a string.
    {"id": "ORD-G", "fake": '"}, {"id": "ORD-', "end": '}, {"id": "ORD-'},
]


@pytest.mark.parametrize(
    "dumps",
    [
        {"separators": (",", ":")},
        {"indent": 2},
        {},
        {"ensure_ascii": False},
        {"indent": "\t", "ensure_ascii": False},
    ],
    ids=["compact", "indent-2", "default", "utf-8", "tabs"],
)
@pytest.mark.parametrize("block", [1 << 20, 64, 7], ids=["1MiB", "64B", "7B"])
def test_arrays_read_lazily_give_the_eager_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dumps: dict[str, Any], block: int
) -> None:
    monkeypatch.setattr(_json, "_BLOCK", block)  # tiny blocks: items cut by a block's end, or larger
    path = write(tmp_path / "o.json", json.dumps(ORDERS + TRICKY, **dumps).encode())

    yielded, error = same_both_ways(path)

    assert error is None
    assert [src.record for src in yielded] == [UNPARSED_ITEM] * 17  # every item split, none parsed
    assert [src.line for src in yielded] == list(range(17))
    assert [json.loads(src.raw) for src in yielded] == ORDERS + TRICKY
    # An item's bytes are its own, inner whitespace kept, outer whitespace and commas not.
    assert all(src.raw == src.raw.strip() for src in yielded)


def test_an_item_much_larger_than_a_block_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_json, "_BLOCK", 64)
    large = {"id": "L", "items": [{"n": i, "s": "}," * 20} for i in range(300)]}
    path = write(tmp_path / "o.json", json.dumps([ORDERS[0], large, ORDERS[1]], indent=2).encode())

    yielded, error = same_both_ways(path)

    assert error is None
    assert _unparsed(yielded) == 3
    assert json.loads(yielded[1].raw) == large


def test_items_that_are_not_objects_are_error_records_with_their_index(tmp_path: Path) -> None:
    path = write(tmp_path / "o.json", b'[{"id": "A"}, 5, "x", [1, {"b": 2}], null, true, {"id": "B"}]')

    yielded, error = same_both_ways(path)

    assert error is None
    items = [parsed(src) for src in yielded]
    assert [i.error for i in items] == [
        None,
        "item 1: expected a JSON object, got a number",
        "item 2: expected a JSON object, got a string",
        "item 3: expected a JSON object, got an array",
        "item 4: expected a JSON object, got null",
        "item 5: expected a JSON object, got a boolean",
        None,
    ]
    assert items[3].raw == "[1, {'b': 2}]"  # as the eager reader words it


@pytest.mark.parametrize(
    "data",
    [b"[]", b"  [ \n ]  \n", b"\xef\xbb\xbf\n\t [ ]", b"", b" \n "],
    ids=["empty", "spaced", "bom", "nothing", "blank"],
)
def test_empty_arrays_and_files_give_no_records(tmp_path: Path, data: bytes) -> None:
    yielded, error = same_both_ways(write(tmp_path / "o.json", data))
    assert (yielded, error) == ([], None)


def test_whitespace_and_a_byte_order_mark_before_the_array_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "o.json", b"\xef\xbb\xbf \r\n\t" + json.dumps(ORDERS).encode() + b"\n \n")
    yielded, error = same_both_ways(path)
    assert error is None
    assert _unparsed(yielded) == 10


def test_a_file_holding_one_object_is_one_record(tmp_path: Path) -> None:
    path = write(tmp_path / "o.json", b'\n  {"id": "X", "v": [1, 2]}\n')
    yielded, error = same_both_ways(path)
    assert error is None
    assert [src.record for src in yielded] == [{"id": "X", "v": [1, 2]}]  # read by ijson, as before


def test_an_item_in_the_rejected_file_layout_is_not_unwrapped(tmp_path: Path) -> None:
    entry = {"position": 3, "source": "/d/o.json", "errors": [], "record": {"id": "ORD-1"}}
    yielded, error = same_both_ways(write(tmp_path / "o.json", json.dumps([entry]).encode()))
    assert error is None
    assert parsed(yielded[0]).record == entry


@pytest.mark.parametrize("block", [1 << 20, 64])
def test_a_syntax_error_in_item_5_of_10_yields_items_0_to_4_then_names_item_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(_json, "_BLOCK", block)
    items = [json.dumps(order) for order in ORDERS]
    items[5] = items[5].replace('"n": 5,', '"n": 5 x')
    path = write(tmp_path / "o.json", ("[" + ",\n".join(items) + "]").encode())

    yielded, error = same_both_ways(path)

    assert [parsed(src).record for src in yielded] == ORDERS[:5]
    assert error is not None
    assert error[0].startswith(f"{path}, item 5: invalid JSON: ")
    assert error[2:4] == (5, 5)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('"n": NaN,', "lexical error: invalid char in json text"),
        ('"n": Infinity,', "lexical error: invalid char in json text"),
        ('"n": 0x1F,', "lexical error: invalid char in json text"),
        ('"n": "caf\xe9",', "lexical error: invalid bytes in UTF8 string"),
        ('"n": "a\tb",', "lexical error: invalid character inside string"),
    ],
    ids=["nan", "infinity", "hex", "latin-1", "raw-tab"],
)
def test_what_ijson_refuses_ends_the_read_at_the_same_item(tmp_path: Path, bad: str, reason: str) -> None:
    items = [json.dumps(order) for order in ORDERS]
    items[7] = items[7].replace('"n": 7,', bad)
    path = write(tmp_path / "o.json", ("[" + ", ".join(items) + "]").encode("latin-1"))

    yielded, error = same_both_ways(path)

    assert len(yielded) == 7
    assert error is not None
    assert error[0].startswith(f"{path}, item 7: invalid JSON: {reason}")


@pytest.mark.parametrize(
    "data",
    [
        b'[{"id": "A"}, {"id": "B"}',
        b'[{"id": "A"}, {"id": "B"},',
        b'[{"id": "A"}, {"id": "B"}, {"id": "C", "x": [1, 2',
        b'[{"id": "A"}, {"id": "B"}] {"id": "C"}',
        b'[{"id": "A"}, {"id": "B"}]]',
        b"[",
    ],
    ids=["no-bracket", "comma", "mid-item", "trailing-object", "two-brackets", "bracket-only"],
)
def test_a_truncated_array_or_what_follows_its_end_is_an_error_after_the_items_before(
    tmp_path: Path, data: bytes
) -> None:
    yielded, error = same_both_ways(write(tmp_path / "o.json", data))
    assert error is not None
    assert error[2] == len(yielded)


def test_a_long_array_cut_short_yields_every_whole_item_lazily_first(tmp_path: Path) -> None:
    many = [{"id": f"ORD-{i}", "n": i, "pad": "x" * 500} for i in range(5000)]  # megabytes
    data = json.dumps(many).encode()
    path = write(tmp_path / "cut.json.gz", data[: len(data) - 20])

    yielded, error = same_both_ways(path)

    assert _unparsed(yielded) > 2000  # the blocks before the end were split; the last is ijson's
    assert len(yielded) == 4999
    assert error is not None
    assert error[0] == (
        f"{path}, item 4999: invalid JSON: parse error: premature EOF. The rest of {path} was not read."
    )


@pytest.mark.parametrize("dumps", [{}, {"indent": 2}])
def test_gzip_files_read_lazily(tmp_path: Path, dumps: dict[str, Any]) -> None:
    many = [{"id": f"ORD-{i}", "n": i, "pad": "y" * 300} for i in range(5000)]
    yielded, error = same_both_ways(write(tmp_path / "o.json.gz", json.dumps(many, **dumps).encode()))
    assert error is None
    assert _unparsed(yielded) == 5000


def test_a_gzip_stream_cut_short_raises_after_the_items_read_whole(tmp_path: Path) -> None:
    many = [{"id": f"ORD-{i}", "pad": "z" * 300} for i in range(5000)]
    data = gzip.compress(json.dumps(many).encode())
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])

    _, eager, eager_error = _read(iter_path(str(path)))
    yielded, lazy, lazy_error = _read(iter_path(str(path), lazy=True))

    # The eager reader loses what the failing read(64 KiB) had decompressed; blocks are read with read1,
    # which hands over what there is, so the lazy reader yields every item decompressed whole.
    assert len(eager) > 100
    assert lazy[: len(eager)] == eager
    assert 0 <= len(lazy) - len(eager) <= 64 * 1024 // 300
    assert lazy_error is not None
    assert eager_error is not None
    assert lazy_error[0] == eager_error[0].replace(f"item {len(eager)}:", f"item {len(lazy)}:")
    assert lazy_error[2:] == (len(lazy), len(lazy), "EOFError")
    assert _unparsed(yielded) > 100


def test_a_storage_error_raises_after_the_items_read_whole() -> None:
    rows = [f'{{"id": "O-{i}", "pad": "{"x" * 20}"}}' for i in range(20000)]
    data = ("[" + ",\n".join(rows) + "]").encode()
    limit = len(data) * 2 // 3  # past the first block of 1 MiB
    whole = data[:limit].count(b"}")  # the items read whole before the storage failed

    _, eager, eager_error = _read(iter_stream(failing(data, limit), "json", source="s3://b/o"))
    yielded, lazy, lazy_error = _read(iter_stream(failing(data, limit), "json", source="s3://b/o", lazy=True))

    assert lazy[: len(eager)] == eager
    assert eager_error is not None
    assert eager_error[2] == len(eager)
    assert len(lazy) == whole
    assert _unparsed(yielded) == whole  # split: the failure cut the last item, which ijson did not complete
    assert lazy_error is not None
    assert lazy_error[0] == (
        f"s3://b/o, item {whole}: reading the file failed (ConnectionResetError: [Errno 104] Connection "
        "reset by peer). The rest of s3://b/o was not read."
    )
    assert lazy_error[2:] == (whole, whole, "ConnectionResetError")


def test_a_half_surrogate_and_deep_nesting_are_read_as_the_eager_reader_reads_them(tmp_path: Path) -> None:
    deep = b'{"id": "DEEP", "x": ' + b"[" * 250 + b"]" * 250 + b"}"
    path = write(
        tmp_path / "o.json", b'[{"id": "A"}, ' + deep + b', {"id": "S", "s": "\\ud800"}, {"id": "B"}]'
    )
    yielded, error = same_both_ways(path)
    assert error is None
    # Split up to the half surrogate, which msgspec refuses: ijson reads on from there, as before.
    assert [is_unparsed(src.record) for src in yielded] == [True, True, False, False]
    # pydantic_core stops at 200 levels, so ijson reads that item, as it reads it eagerly.
    assert parsed(yielded[1]).record["id"] == "DEEP"
    assert parsed(yielded[2]).record["s"] == "?"  # what ijson makes of half a surrogate pair


def test_numbers_beyond_64_bits_or_a_double_are_records_when_read_lazily(tmp_path: Path) -> None:
    # ijson cannot step over them and ends the read; split lazily, the item is judged on its own, as a
    # line of a JSON Lines file is (the models or the encoder refuse what Klar cannot store).
    path = write(
        tmp_path / "o.json", b'[{"id": "A", "n": 123456789012345678901234567890}, {"id": "B", "x": 1e400}]'
    )
    eager, _, eager_error = _read(iter_path(str(path)))
    lazy, parsed_lazy, lazy_error = _read(iter_path(str(path), lazy=True))
    assert (eager, eager_error is not None) == ([], True)
    assert lazy_error is None
    assert _unparsed(lazy) == 2
    assert [r[3] for r in parsed_lazy] == [
        {"id": "A", "n": 123456789012345678901234567890},
        {"id": "B", "x": float("inf")},
    ]


def test_without_msgspec_the_items_are_parsed_by_ijson(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_array, "_decode_items", None)  # as on Airflow 2 without msgspec
    yielded, error = same_both_ways(write(tmp_path / "o.json", json.dumps(ORDERS).encode()))
    assert error is None
    assert [src.record for src in yielded] == ORDERS


def test_the_markers_of_records_read_lazily_survive_pickling() -> None:
    assert pickle.loads(pickle.dumps(UNPARSED_ITEM)) is UNPARSED_ITEM
    assert pickle.loads(pickle.dumps(UNPARSED)) is UNPARSED
    assert (repr(UNPARSED), repr(UNPARSED_ITEM)) == ("UNPARSED", "UNPARSED_ITEM")


_KEYS = st.text(st.sampled_from('ab},]{["\\ :é😀\u2028\n'), max_size=6)
_STRINGS = st.text(st.sampled_from('xy},]{["\\ :,é😀\u2028\n\t'), max_size=12) | st.text(max_size=8)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _STRINGS
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)
_ITEMS = st.dictionaries(_KEYS, _VALUES, max_size=5) | _SCALARS


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(_ITEMS, max_size=12),
    dumps=st.sampled_from(
        [
            {},
            {"indent": 2},
            {"separators": (",", ":")},
            {"indent": 0, "ensure_ascii": False},
            {"ensure_ascii": False},
        ]
    ),
    block=st.integers(min_value=1, max_value=300),
)
def test_any_array_reads_the_same_lazily_for_any_block_size(
    items: list[Any], dumps: dict[str, Any], block: int
) -> None:
    data = json.dumps(items, **dumps).encode()
    original = _json._BLOCK
    _json._BLOCK = block
    try:
        _, eager, eager_error = _read(iter_stream(io.BytesIO(data), "json"))
        yielded, lazy, lazy_error = _read(iter_stream(io.BytesIO(data), "json", lazy=True))
    finally:
        _json._BLOCK = original
    assert eager_error is None
    assert lazy_error is None
    assert lazy == eager
    assert _unparsed(yielded) == len(items)
    # Cut anywhere, the array reads the same both ways too: the items before, then the same error.
    cut = data[: len(data) * 2 // 3]
    _, eager, eager_error = _read(iter_stream(io.BytesIO(cut), "json"))
    _, lazy, lazy_error = _read(iter_stream(io.BytesIO(cut), "json", lazy=True))
    assert (lazy, lazy_error) == (eager, eager_error)


def test_a_buffer_that_cannot_be_cut_is_handed_to_ijson_once_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_json, "_BLOCK", 256)
    monkeypatch.setattr(_array, "_MAX_BUFFER", 4096)
    items = [json.dumps(order) for order in ORDERS[:3]]
    items.append('{"id": "S", "s": "\\ud800"}')  # msgspec refuses it: no cut after it can succeed
    items += [json.dumps({"id": f"T-{i}", "pad": "p" * 100}) for i in range(500)]
    data = ("[" + ", ".join(items) + "]").encode()
    stream = io.BytesIO(data)

    read_when: list[int] = []
    lazy = []
    for src in iter_stream(stream, "json", lazy=True):
        read_when.append(stream.tell())
        lazy.append(parsed(src))
    _, eager, _ = _read(iter_stream(io.BytesIO(data), "json"))

    assert [_comparable(src) for src in lazy] == eager
    assert len(lazy) == 504
    assert read_when[3] < 4096 + 2 * 256  # ijson took over at the bound, not at the end of the file
