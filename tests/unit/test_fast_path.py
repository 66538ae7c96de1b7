"""The JSON Lines fast path: a line the validator proves exact is sent as its own bytes, not re-encoded.

Whatever the line holds, the fast path (the reader hands over the line's bytes) and the slow path (the
same records without them) must agree on every accepted and rejected record, every error and warning,
and on what Klar receives.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_klar.models import RecordValidator
from airflow_provider_klar.results import KlarBatchResult, OutcomeState, RecordOutcome
from airflow_provider_klar.sandbox.fake_data import fake_orders
from airflow_provider_klar.upload import prepare as prepare_module
from airflow_provider_klar.upload._array import iter_json_array
from airflow_provider_klar.upload._json import iter_json_lines
from airflow_provider_klar.upload._record import UNPARSED_ITEM
from airflow_provider_klar.upload.accounting import MAX_ERRORS, Rejection
from airflow_provider_klar.upload.engine import EngineSettings, UploadEngine
from airflow_provider_klar.upload.prepare import PreparedRecord, make_preparer
from airflow_provider_klar.upload.sources import iter_path


def _order(version: str, n: int) -> dict[str, Any]:
    return next(fake_orders(1, seed=3, version=version, start=n))


def mixed_lines(version: str) -> list[bytes]:
    """One line of each kind a real file may hold, for orders of ``version``."""
    lines: list[bytes] = []

    def add(record: Any, **dumps: Any) -> None:
        lines.append(json.dumps(record, **dumps).encode())

    plain = _order(version, 0)
    add(plain)  # valid, json.dumps' default spacing
    add(_order(version, 1), separators=(",", ":"))  # valid, compact
    add(_order(version, 2), indent=None, ensure_ascii=True)
    umlaut = _order(version, 3)
    umlaut["orderName"] = "Bestellung für Jürgen \u2028 😀"
    add(umlaut, ensure_ascii=False)  # valid, raw UTF-8 and a line separator inside a string
    snake = _order(version, 4)
    snake["payment_gateway_name"] = snake.pop("paymentGatewayName")
    add(snake)  # valid once renamed: must reach Klar in camelCase
    unknown = _order(version, 5)
    unknown["note"] = "gift"
    unknown["lineItems"][0]["foo"] = {"bar": [1, 2.5, None]}
    add(unknown)  # valid, unknown fields reported and kept
    both = _order(version, 6)
    both["customer_note"] = "x"
    both["order_name"] = both.pop("orderName")
    add(both)  # snake_case name and an unknown field with an underscore
    bad_rate = _order(version, 7)
    bad_rate["lineItems"][0]["taxes"][0]["taxRate"] = "19%"
    add(bad_rate)  # invalid value
    bad_many = _order(version, 8)
    bad_many["createdAt"] = -5
    bad_many["currencyCodeIso3Letter"] = "EURO"
    del bad_many["lineItems"][0]["quantity"]
    add(bad_many)  # several errors
    pitfall = _order(version, 9)
    pitfall["lineItems"][0]["totalAmountAfterTaxesAndDiscounts"] += 50
    add(pitfall)  # valid with a pitfall warning (an error when strict)
    lines.append(b'{"id": "ORD-CUT", "createdAt": ')  # malformed, cut short
    lines.append(b"[1, 2]")  # not an object
    lines.append(b'{"id": "ORD-NAN", "createdAt": NaN}')  # not JSON
    huge = _order(version, 10)
    lines.append(json.dumps(huge)[:-1].encode() + b', "extra": 1e400}')  # reads as infinity
    bundle = _order(version, 11)
    bundle["lineItems"][0]["bundledProducts"] = [copy.deepcopy(bundle["lineItems"][0])]
    add(bundle)  # bundles: fine in 07.2025, an error in 12.2022
    null_id = _order(version, 12)
    null_id["orderNumber"] = None
    add(null_id)  # null where Klar wants a value or nothing
    add(_order(version, 13), indent=1)  # valid, but spread over lines: every line is malformed
    lines.append(b"   ")  # blank: skipped
    add(_order(version, 14))
    # Hostile lines, for the one pass over the bytes of a line read lazily.
    deep = _order(version, 15)
    deep["extra"] = json.loads("[" * 150 + "]" * 150)
    add(deep)  # deep, but within the limit
    for levels in (250, 1000):
        too_deep = _order(version, 16)
        too_deep["extra"] = {"x": 1}
        lines.append(json.dumps(too_deep).replace('{"x": 1}', "[" * levels + "]" * levels).encode())
    lines.append(b'{"id": "ORD-SUR", "note": "\\ud800"}')  # half a surrogate pair
    lines.append(json.dumps(_order(version, 17)).encode().replace(b'"id": "', b'"id": "\xff', 1))  # not UTF-8
    lines.append(b"\xef\xbb\xbf" + json.dumps(_order(version, 18)).encode())  # a BOM inside the file
    tab = _order(version, 19)
    lines.append(json.dumps(tab).encode().replace(b'"id": "', b'"id": "\t', 1))  # raw tab in a string
    twice = _order(version, 20)
    lines.append(json.dumps(twice)[:-1].encode() + b', "id": "ORD-TWICE"}')  # a key twice: the last wins
    lines.append(json.dumps(_order(version, 21))[:-1].encode() + b', "createdAt": "soon"}')  # twice, bad
    wrapped = {"position": 3, "source": "/d/o.jsonl", "line": 4, "id": "ORD-22", "origin": "local"}
    add({**wrapped, "errors": [{"field": "", "message": ""}], "record": _order(version, 22)})  # rejected file
    add({**wrapped, "errors": [], "record": json.dumps(_order(version, 23))})  # ...holding text
    lines.append(b"  " + json.dumps(_order(version, 24)).encode() + b" \r")  # padded
    lax = _order(version, 25)
    lax["customer"]["isNewsletterSubscriberAtTimeOfCheckout"] = "true"
    add(lax)  # a string for a bool: strict models refuse it
    lax = _order(version, 26)
    lax["lineItems"][0]["quantity"] = "2"
    add(lax)  # a string for a number
    lax = _order(version, 27)
    lax["orderNumber"] = 27
    add(lax)  # a number for a string
    return lines


def _read(data: bytes, *, lazy: bool = False) -> list[Any]:
    return list(iter_json_lines(io.BytesIO(data), "/d/o.jsonl", 0, lazy=lazy))


def _without_raw(records: list[Any]) -> list[Any]:
    # The slow path: the same records as before the fast path existed (malformed lines keep their text).
    return [r if isinstance(r.raw, str) else dataclasses.replace(r, raw=None) for r in records]


def _decoded(prepared: PreparedRecord) -> Any:
    return None if prepared.encoded is None else json.loads(prepared.encoded)


CASES = [("07.2025", False), ("12.2022", False), ("07.2025", True)]


@pytest.mark.parametrize(("version", "strict"), CASES)
def test_fast_and_slow_paths_prepare_the_same_outcomes(version: str, strict: bool) -> None:
    data = b"\n".join(mixed_lines(version)) + b"\n"
    validator = RecordValidator("orders", version, strict=strict)
    fast_records = _read(data)
    slow_records = _without_raw(_read(data))
    assert any(isinstance(r.raw, bytes) for r in fast_records)
    assert not any(isinstance(r.raw, bytes) for r in slow_records)
    prepare = make_preparer(validator, "id")
    fast = [prepare(r) for r in fast_records]
    slow = [prepare(r) for r in slow_records]
    one_pass = [prepare(r) for r in _read(data, lazy=True)]
    assert len(fast) == len(slow) == len(one_pass) > 30
    _assert_same(fast, slow)
    _assert_same(one_pass, slow)
    # The mix covers what it claims: sent and refused records, warnings, unknown fields, malformed lines.
    assert sum(p.encoded is not None for p in fast) >= 6
    assert sum(p.encoded is None for p in fast) >= 8
    assert any(p.unknown_fields for p in fast)
    assert any("Malformed record" in e.message for p in fast for e in p.errors)
    if strict:
        assert any("order ORD-9" in e.message for p in fast for e in p.errors)
    else:
        assert any("order ORD-9" in w.message for p in fast for w in p.warnings)
    # Nothing Klar receives carries a snake_case name the models know.
    for p in fast:
        if p.encoded is not None:
            assert b'"payment_gateway_name"' not in p.encoded
            assert b'"order_name"' not in p.encoded


def _assert_same(prepared: list[PreparedRecord], expected: list[PreparedRecord]) -> None:
    for number, (one, other) in enumerate(zip(prepared, expected, strict=True), 1):
        assert (one.encoded is None) == (other.encoded is None), number
        assert one.id == other.id, number
        assert one.errors == other.errors, number
        assert one.warnings == other.warnings, number
        assert one.unknown_fields == other.unknown_fields, number
        assert _decoded(one) == _decoded(other), number


@pytest.mark.parametrize("version", ["07.2025", "12.2022"])
def test_unchecked_lines_read_lazily_prepare_as_parsed_ones(version: str) -> None:
    data = b"\n".join(mixed_lines(version)) + b"\n"
    prepare = make_preparer(None, "id")
    one_pass = [prepare(r) for r in _read(data, lazy=True)]
    parsed_first = [prepare(r) for r in _read(data)]
    _assert_same(one_pass, parsed_first)
    assert sum(p.encoded is not None for p in one_pass) >= 15
    assert any("Cannot be sent as JSON" in e.message for p in one_pass for e in p.errors)  # 1e400


class RecordingSender:
    """Accepts every record and keeps the bytes sent (thread-safe enough: list.append is atomic)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def upload(
        self, resource: str, records: Sequence[Mapping[str, Any]], *, encoded: Sequence[bytes] | None = None
    ) -> KlarBatchResult:
        assert encoded is not None
        self.sent.extend(encoded)
        outcomes = tuple(RecordOutcome(i, r.get("id"), OutcomeState.ACCEPTED) for i, r in enumerate(records))
        return KlarBatchResult(resource, "07.2025", "upload", 201, outcomes)

    validate = upload


def _upload(records: list[Any], version: str) -> tuple[list[Any], list[Rejection], Any]:
    sender = RecordingSender()
    rejected: list[Rejection] = []
    settings = EngineSettings(resource="orders", api_version=version, batch_size=4, max_concurrency=2)
    engine = UploadEngine(
        settings, sender, validator=RecordValidator("orders", version), on_rejected=rejected.append
    )
    result = engine.run(records)
    return [json.loads(part) for part in sender.sent], rejected, result.tally


def _assert_same_first_errors(one: dict[str, Any], other: dict[str, Any], rejected: list[Rejection]) -> None:
    """Pop the first error lines off two tallies' states; assert they are alike.

    The tally keeps the first MAX_ERRORS error lines in the order batches were answered, which varies
    between runs: with more lines than that, which ones are kept varies too. Every kept line must be a
    line of a rejected record, and as many are kept either way.
    """
    every_line = [line for rejection in rejected for line in rejection.lines()]
    kept = min(MAX_ERRORS, len(every_line))
    for errors in (one.pop("errors"), other.pop("errors")):
        assert len(errors) == kept
        assert set(errors) <= set(every_line)


def _assert_same_upload(one: tuple[Any, ...], other: tuple[Any, ...]) -> None:
    """Assert two uploads (``_upload``'s results) sent, rejected and counted the same records.

    Batches may be answered in any order, so what was sent and rejected is compared as sorted lists.
    """
    one_sent, one_rejected, one_tally = one
    other_sent, other_rejected, other_tally = other
    assert sorted(one_sent, key=json.dumps) == sorted(other_sent, key=json.dumps)
    assert len(one_sent) >= 6
    assert sorted((r.ordinal, r.id, r.errors, str(r.record)) for r in one_rejected) == sorted(
        (r.ordinal, r.id, r.errors, str(r.record)) for r in other_rejected
    )
    one_state, other_state = one_tally.to_state(), other_tally.to_state()
    assert sorted(one_state.pop("rejected_ids")) == sorted(other_state.pop("rejected_ids"))
    _assert_same_first_errors(one_state, other_state, other_rejected)
    assert one_state == other_state
    assert one_tally.accepted == len(one_sent)


@pytest.mark.parametrize("version", ["07.2025", "12.2022"])
def test_an_upload_sends_and_rejects_the_same_whichever_path(version: str) -> None:
    data = b"\n".join(mixed_lines(version)) + b"\n"
    slow = _upload(_without_raw(_read(data)), version)
    _assert_same_upload(_upload(_read(data), version), slow)
    _assert_same_upload(_upload(_read(data, lazy=True), version), slow)


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The records the upload encodes itself (its encoder spied on), rather than sending as read."""
    seen: list[Any] = []
    real = prepare_module._encode_valid

    def spy(record: Any) -> bytes:
        seen.append(record)
        return real(record)

    monkeypatch.setattr(prepare_module, "_encode_valid", spy)
    return seen


def test_plain_valid_lines_take_the_fast_path(encoded: list[Any], tmp_path: Path) -> None:
    lines = [json.dumps(o).encode() for o in fake_orders(30, seed=5)]
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    prepare = make_preparer(RecordValidator("orders", "07.2025"), "id")
    prepared = [prepare(r) for r in iter_path(str(path))]
    assert encoded == []  # no record was encoded again...
    assert [p.encoded for p in prepared] == lines  # ...each went as its own line, byte for byte
    # A line the validator must rewrite is encoded (the spy sees it), so the spy can see anything at all.
    snake = next(fake_orders(1, seed=5))
    snake["order_name"] = snake.pop("orderName")
    (one,) = _read(json.dumps(snake).encode())
    assert json.loads(prepare(one).encoded or b"null")["orderName"] == snake["order_name"]
    assert len(encoded) == 1


def test_a_byte_order_mark_is_not_part_of_the_bytes_sent() -> None:
    order = next(fake_orders(1))
    line = json.dumps(order).encode()
    records = _read(b"\xef\xbb\xbf" + line + b"\n" + line + b"\n")
    assert [r.raw for r in records] == [line + b"\n", line + b"\n"]
    prepare = make_preparer(RecordValidator("orders", "07.2025"), "id")
    assert [prepare(r).encoded for r in records] == [line, line]


def test_unchecked_records_are_encoded_from_the_dict_not_sent_as_read() -> None:
    # Without validation nothing proves the bytes: 1e400 would reach Klar; encoding refuses it.
    (record,) = _read(b'{"id": "ORD-1", "x": 1e400}\n')
    prepared = make_preparer(None, "id")(record)
    assert prepared.encoded is None
    assert "Cannot be sent as JSON" in prepared.errors[0].message
    (record,) = _read(b'{"id":  "ORD-1" , "x": 1}\n')
    assert make_preparer(None, "id")(record).encoded == b'{"id":"ORD-1","x":1}'


def test_a_line_too_long_as_read_is_encoded_compactly_instead() -> None:
    order = next(fake_orders(1))
    compact = json.dumps(order, separators=(",", ":")).encode()
    (record,) = _read(json.dumps(order, indent=None, separators=(",   ", ":   ")).encode())
    prepare = make_preparer(RecordValidator("orders", "07.2025"), "id", max_raw=len(compact) + 10)
    prepared = prepare(record)
    assert prepared.encoded is not None
    assert len(prepared.encoded) <= len(compact) + 10
    assert json.loads(prepared.encoded) == order


def test_an_upload_sends_a_record_that_fits_only_once_its_whitespace_is_gone() -> None:
    order = next(fake_orders(1))
    compact = json.dumps(order, separators=(",", ":")).encode()
    records = _read(json.dumps(order, separators=(",   ", ":   ")).encode())
    cap = len(compact) + 64
    assert len(records[0].raw) > cap
    sender = RecordingSender()
    settings = EngineSettings(resource="orders", api_version="07.2025", max_batch_bytes=cap)
    result = UploadEngine(settings, sender, validator=RecordValidator("orders", "07.2025")).run(records)
    assert result.tally.accepted == 1
    assert [json.loads(part) for part in sender.sent] == [order]


@pytest.mark.parametrize("checked", [True, False])
def test_cogs_lines_read_lazily_keep_their_key_and_their_errors(checked: bool) -> None:
    lines = [
        b'{"orderId": "O-1", "lineItemId": "L-1", "productCogs": 2.5}',
        b'{"orderId": "O-1", "sku": "S-1", "productCogs": 3}',
        b'{"orderId": "O-2", "productCogs": 3}',  # neither lineItemId nor sku
        b'{"orderId": "O-3", "sku": "S-3", "productCogs": -1}',
        b'{"orderId": "O-4", "sku": "S-4", "productCogs": 1, "note": "unknown"}',
        b'{"order_id": "O-5", "sku": "S-5", "productCogs": 1}',
    ]
    data = b"\n".join(lines) + b"\n"
    validator = RecordValidator("cogs", "12.2022") if checked else None
    prepare = make_preparer(validator, "orderId", key_fields=("orderId", "lineItemId", "sku"))
    one_pass = [prepare(r) for r in _read(data, lazy=True)]
    _assert_same(one_pass, [prepare(r) for r in _read(data)])
    assert [p.key for p in one_pass[:2]] == [("O-1", "L-1", None), ("O-1", None, "S-1")]
    if checked:
        assert [p.encoded is None for p in one_pass] == [False, False, True, True, False, False]
        assert one_pass[4].unknown_fields == ("note",)
        assert one_pass[5].key == ("O-5", None, "S-5")  # renamed to orderId before it is sent


class DictsOnly:
    """A validator of dicts only (no validate_json), as a caller of the engine may pass."""

    def __init__(self) -> None:
        self._inner = RecordValidator("orders", "07.2025")

    def validate(self, record: Any) -> Any:
        return self._inner.validate(record)


def test_a_validator_of_dicts_only_gets_every_lazy_line_parsed_first() -> None:
    data = b"\n".join(mixed_lines("07.2025")) + b"\n"
    prepare = make_preparer(DictsOnly(), "id")  # type: ignore[arg-type]
    _assert_same([prepare(r) for r in _read(data, lazy=True)], [prepare(r) for r in _read(data)])
    assert sum(p.encoded is not None for p in (prepare(r) for r in _read(data, lazy=True))) >= 6


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def mixed_items(version: str) -> bytes:
    """The lines of :func:`mixed_lines` that are JSON values ijson reads whole, as one JSON array.

    Each item keeps its line's bytes (a key twice, raw UTF-8, a line separator). Left out: what is not
    JSON, byte order marks included (an array cannot go on after it), numbers ijson refuses (it ends the
    read; read lazily they are judged as in JSON Lines) and half a surrogate pair (msgspec refuses it, so
    ijson reads on from there: see ``tests/unit/test_array_split.py``).
    """
    items = []
    for line in mixed_lines(version):
        if not line.strip() or b"1e400" in line or b"\\ud800" in line:
            continue
        try:
            json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            continue
        items.append(line.strip())
    return b"[" + b",\n".join(items) + b"]"


def _read_array(data: bytes, *, lazy: bool = False) -> list[Any]:
    return list(iter_json_array(io.BytesIO(data), "/d/o.json", 0, lazy=lazy))


@pytest.mark.parametrize(("version", "strict"), CASES)
def test_array_items_read_lazily_prepare_as_the_eager_reader_s(version: str, strict: bool) -> None:
    data = mixed_items(version)
    lazy = _read_array(data, lazy=True)
    assert [r.record for r in lazy] == [UNPARSED_ITEM] * len(lazy)  # every item split, none parsed
    validator = RecordValidator("orders", version, strict=strict)
    for prepare in (make_preparer(validator, "id"), make_preparer(None, "id")):
        one_pass = [prepare(r) for r in lazy]
        eager = [prepare(r) for r in _read_array(data)]
        assert len(one_pass) == len(eager) >= 25
        _assert_same(one_pass, eager)
    assert any(p.encoded is None for p in one_pass)  # the mix has records to refuse


@pytest.mark.parametrize("version", ["07.2025", "12.2022"])
def test_an_upload_of_an_array_sends_and_rejects_the_same_read_lazily(version: str) -> None:
    data = mixed_items(version)
    _assert_same_upload(_upload(_read_array(data, lazy=True), version), _upload(_read_array(data), version))


@pytest.mark.parametrize("dumps", [{}, {"indent": 2}], ids=["default", "indent-2"])
def test_valid_array_items_are_sent_as_read(
    encoded: list[Any], tmp_path: Path, dumps: dict[str, Any]
) -> None:
    orders = list(fake_orders(30, seed=5))
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(orders, **dumps))
    records = list(iter_path(str(path), lazy=True))
    prepare = make_preparer(RecordValidator("orders", "07.2025"), "id")
    prepared = [prepare(r) for r in records]
    assert encoded == []  # no record was encoded again...
    assert [p.encoded for p in prepared] == [r.raw for r in records]  # ...each went as its item's bytes
    assert [json.loads(p.encoded or b"null") for p in prepared] == orders
    assert all(r.raw in path.read_bytes() for r in records)
