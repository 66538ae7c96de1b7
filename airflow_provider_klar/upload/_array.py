"""The JSON array reader (used through :mod:`~airflow_provider_klar.upload.sources`).

A JSON array cannot be resynchronised after a syntax error, so there the read stops with
:class:`~airflow_provider_klar.exceptions.KlarSourceError` naming the item; so does a file whose gzip
stream or storage fails. Read lazily (``lazy=True``, as uploads read), each item is handed on as its
bytes, unparsed, as a JSON Lines line is: msgspec splits the array into its items' bytes where it is
installed (see :class:`_ItemSplitter`); without it, or for a file holding one object, the items are
parsed by ijson as when read eagerly.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

import ijson
from pydantic_core import from_json

from airflow_provider_klar.upload import _json
from airflow_provider_klar.upload._json import BOM, STREAM_ERRORS, _broken, _raw, _reason, json_type
from airflow_provider_klar.upload._record import UNPARSED_ITEM, SourceRecord, cut, source_error

_decode_items: Callable[[Any], list[Any]] | None
try:
    # msgspec (a dependency) splits a JSON array into its items' bytes
    # (msgspec.Raw) in C, checking the syntax on the way: about 3 µs for a 3 KB order, where ijson
    # spends 50 µs building it as Python objects.
    import msgspec

    _decode_items = msgspec.json.Decoder(list[msgspec.Raw]).decode
except ImportError:  # without msgspec, array items are parsed by ijson, as when read eagerly
    _decode_items = None

_WHITESPACE = b" \t\r\n"


def _first_significant(stream: IO[bytes]) -> tuple[bytes, int | None]:
    """Read up to the first byte that is not whitespace (nor a BOM); return what was read and it."""
    head = b""
    while True:
        chunk = stream.read(4096)
        if not chunk:
            return head, None
        head += chunk
        if head.startswith(BOM):
            head = head[len(BOM) :]
        stripped = head.lstrip(_WHITESPACE)
        if stripped:
            return stripped, stripped[0]
        head = b""


class _Prefixed:
    """A read-only stream that first returns ``head`` (bytes already read), then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes] | _Failing) -> None:
        self._head = io.BytesIO(head)
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            # ijson probes with read(0) whether the stream gives bytes or text.
            return b""
        # In pieces of the size asked for: the head may be megabytes (what the item splitter held).
        return self._head.read(size) or self._stream.read(size)


class _Failing:
    """A stream whose reading fails with ``exc``: what the item splitter hands on after a read failed."""

    def __init__(self, exc: BaseException) -> None:
        self._exc = exc

    def read(self, size: int = -1) -> bytes:
        raise self._exc


def iter_json_array(
    stream: IO[bytes], source: str, start: int, *, lazy: bool = False
) -> Iterator[SourceRecord]:
    """Yield the objects of a JSON array one by one (streamed), or one record for an object.

    ``line`` is the item's 0-based index. Items that are not objects are error records. A syntax error
    midway (also ``NaN``, a byte that is not UTF-8: the array cannot be resynchronised after them) ends
    the read: the items before it are yielded, then
    :class:`~airflow_provider_klar.exceptions.KlarSourceError` names the item.

    :param stream: The binary stream (already decompressed).
    :param source: The file's display name.
    :param start: The position of the first record.
    :param lazy: Yield each item of an array unparsed (its record :data:`~._record.UNPARSED_ITEM`, its
        bytes in ``raw``), as :func:`iter_json_lines` yields lines: the upload checks the bytes in one
        pass and parses them only when that fails. Needs msgspec (else the items are parsed by ijson).
        An integer beyond 64 bits or a number beyond a double's range then no longer ends the read: the
        item is judged on its own, as a JSON Lines line is.
    :raises KlarSourceError: For a syntax error, a file that holds no JSON array or object, a broken gzip
        stream or a storage error.
    """
    count = 0
    try:
        head, first = _first_significant(stream)
        if first is None:
            return
        if first not in b"[{":
            shown = cut(head[:40].decode("utf-8", "replace"), 40)
            raise source_error(
                source, "item 0", f"expected a JSON array of objects, found {shown!r}", position=start, line=0
            )
        body: IO[bytes] | _Prefixed = _Prefixed(head, stream)
        if lazy and first == ord("[") and _decode_items is not None:
            splitter = _ItemSplitter(head[1:], stream)
            for items in splitter.chunks():
                for item in items:
                    yield SourceRecord(start + count, source, count, UNPARSED_ITEM, None, item)
                    count += 1
            if splitter.rest is None:
                return
            # The splitter met what it cannot vouch for: ijson reads on from the first item not yielded
            # (its own index count goes on), yields the items before a syntax error and words the error.
            body = splitter.rest
        prefix = "item" if first == ord("[") else ""
        # ijson's pull parser (C backend) yields every value completed before a syntax error.
        # use_float: plain floats instead of Decimal (ints stay ints), as json.loads gives.
        for item in ijson.items(body, prefix, use_float=True):
            if type(item) is dict:
                yield SourceRecord(start + count, source, count, item)
            else:
                yield _not_an_object(item, count, start + count, source)
            count += 1
    except ijson.JSONError as exc:
        raise source_error(
            source, f"item {count}", f"invalid JSON: {_ijson_reason(exc)}", position=start + count, line=count
        ) from exc
    except STREAM_ERRORS as exc:
        raise source_error(source, f"item {count}", _broken(exc), position=start + count, line=count) from exc


def _ijson_reason(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).splitlines()[0].strip() if text else type(exc).__name__


def _not_an_object(item: Any, index: int, position: int, source: str) -> SourceRecord:
    problem = f"item {index}: expected a JSON object, got {json_type(item)}"
    return SourceRecord(position, source, index, None, problem, cut(repr(item)))


def parse_json_item(raw: bytes, index: int, position: int, source: str) -> SourceRecord:
    """Read one item of a JSON array read lazily (see :func:`iter_json_array`'s ``lazy``) as the eager
    reader yields it: its object, or an error record for an item that is not an object.

    :param raw: The item's bytes (one JSON value: the splitter checked the syntax).
    :param index: Its 0-based index in the array.
    :param position: Its position in the whole source.
    :param source: The file's display name.
    """
    try:
        item = from_json(raw, allow_inf_nan=False, cache_strings="keys")
    except ValueError as exc:
        # What pydantic_core refuses in valid JSON (nested more than 200 levels, ...) is read by ijson,
        # as the eager reader reads it; the models then say what is wrong with the record.
        try:
            item = next(ijson.items(io.BytesIO(raw), "", use_float=True))
        except (ijson.JSONError, RecursionError, StopIteration):
            problem = f"item {index}: {_reason(exc, raw)}"
            return SourceRecord(position, source, index, None, problem, _raw(raw))
    if type(item) is dict:
        # The item's bytes travel along, as a line's do (see parse_json_line).
        return SourceRecord(position, source, index, item, None, raw)
    return _not_an_object(item, index, position, source)


#: Whitespace then a comma: what follows a ``}`` that may end an item of an array.
_COMMA_AFTER = re.compile(rb"[ \t\r\n]*,")
_WHITESPACE_RUN = re.compile(rb"[ \t\r\n]*")
#: What lies between two items of an array.
_SEPARATOR = re.compile(rb"[ \t\r\n]*,[ \t\r\n]*")
#: A buffer that cannot be cut although it holds this much is handed to ijson (see _ItemSplitter).
_MAX_BUFFER = 64 << 20
#: Cuts tried per look at the buffer: each failed try costs a pass over the buffer.
_TRIES = 4
#: ``}`` tried per look (a run of ``}}}}`` with no comma after them is not worth a Python loop).
_MAX_STEPS = 64


class _ItemSplitter:
    """Split a JSON array, read in blocks, into its items' bytes, checked by msgspec at C speed.

    The buffer holds ``[`` and then the items not yielded yet (it starts at an item: after the opening
    bracket or an item's comma). A cut is tried at a ``}`` followed by a comma, from the buffer's end
    backwards: with ``]`` written over the byte after it, the buffer up to there is decoded as a list of
    raw values. JSON is read left to right deterministically, so when that decodes, the ``}`` ends an
    item of the whole array (one inside a string or a nested object makes it fail). Once a cut
    succeeded, the bytes between its first two items (``}``, the separator, the start the items share,
    such as ``{"id": "ORD-``) are looked for first, so that the ``}`` of nested objects are rarely tried.
    The last cut is at the array's closing ``]``. The buffer is a ``bytearray`` decoded in place and cut
    from the front: no megabyte is copied but the block read.

    Where no cut succeeds, the buffer grows (an item larger than a block; one cut is tried again once
    the buffer has doubled); past :data:`_MAX_BUFFER` or at the stream's end, or when a chunk holds a
    byte that is not UTF-8 (msgspec does not check bytes inside strings; ijson refuses them),
    :attr:`rest` is set to the bytes from the first item not yielded on, for ijson to read as the eager
    reader does: it yields the items before a syntax error and words the error.
    """

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        """
        :param head: What was read of the array after its opening ``[``.
        :param stream: The stream, at the byte after ``head``.
        """
        self._buffer = bytearray(b"[")
        self._buffer += head
        self._stream = stream
        #: The stream for ijson to read on from, once splitting stopped short of the array's end.
        self.rest: _Prefixed | None = None
        self._marker: bytes | None = None

    def chunks(self) -> Iterator[list[bytes]]:
        """Yield the array's items' bytes in lists (one list per cut), in order."""
        stream = self._stream
        read = getattr(stream, "read1", None) or stream.read
        buffer = self._buffer
        retry_at = 0
        while True:
            try:
                block = read(_json._BLOCK)
            except STREAM_ERRORS as exc:
                # ijson yields the items read whole that could not be cut, then meets the same failure.
                yield from self._last_cuts()
                self.rest = _Prefixed(bytes(buffer), _Failing(exc))
                return
            if not block:
                # The end: what is left must be the last items and the closing bracket.
                items = self._items(len(buffer), close=False)
                if items is None or items is _UNTRUSTED:
                    yield from self._last_cuts()
                    self.rest = _Prefixed(bytes(buffer), stream)
                elif items:
                    yield items
                return
            buffer += block
            if len(buffer) < retry_at:
                continue
            found = self._cut()
            if found is None:
                if len(buffer) > _MAX_BUFFER:
                    self.rest = _Prefixed(bytes(buffer), stream)
                    return
                # Tried again once the buffer has doubled: a large item costs O(its size) tries in all.
                retry_at = 2 * len(buffer)
                continue
            items, end = found
            if items is _UNTRUSTED:
                self.rest = _Prefixed(bytes(buffer), stream)
                return
            retry_at = 0
            del buffer[1:end]  # the rest of the block moves to the front; "[" stays
            yield items

    def _last_cuts(self) -> Iterator[list[bytes]]:
        """Yield the items that can still be cut off the buffer, which will not grow any more."""
        while (found := self._cut()) is not None and found[0] is not _UNTRUSTED:
            items, end = found
            del self._buffer[1:end]
            yield items

    def _cut(self) -> tuple[Any, int] | None:
        """Find the last item boundary worth trying; return the items before it and where the rest starts."""
        buffer = self._buffer
        marker = self._marker
        if marker is not None:
            end = len(buffer)
            for _ in range(_TRIES):
                at = buffer.rfind(marker, 0, end)
                if at < 0:
                    break
                items = self._items(at + 1, close=True)
                if items is not None:
                    return items, _COMMA_AFTER.match(buffer, at + 1).end()  # type: ignore[union-attr]
                end = at + len(marker) - 1  # the next occurrence ends before this one's last byte
        end = len(buffer)
        tries = 0
        for _ in range(_MAX_STEPS):
            at = buffer.rfind(b"}", 0, end)
            if at < 0:
                return None
            end = at
            comma = _COMMA_AFTER.match(buffer, at + 1)
            if comma is None:
                continue
            items = self._items(at + 1, close=True)
            if items is not None:
                if items is not _UNTRUSTED:
                    self._learn(items)
                return items, comma.end()
            tries += 1
            if tries == _TRIES:
                return None
        return None

    def _learn(self, items: list[bytes]) -> None:
        """Remember what lies between the first two items (if objects): the marker of later boundaries."""
        if len(items) < 2:
            return
        first, second = items[0], items[1]
        if not (first.endswith(b"}") and second.startswith(b"{")):
            return
        buffer = self._buffer
        begin = _WHITESPACE_RUN.match(buffer, 1).end() + len(first)  # type: ignore[union-attr]
        gap = _SEPARATOR.match(buffer, begin)
        if gap is None:
            return
        # Run once per learning, over at most 32 bytes.
        shared, most = 1, min(32, len(first), len(second))
        while shared < most and first[shared] == second[shared]:
            shared += 1
        self._marker = b"}" + bytes(buffer[begin : gap.end()]) + second[:shared]

    def _items(self, end: int, *, close: bool) -> Any:
        """Decode the buffer up to ``end`` as a list of values; return their bytes, ``None`` when it is not
        one, :data:`_UNTRUSTED` when it holds a byte that is not UTF-8 (msgspec passes them inside
        strings; ijson refuses them).

        :param end: Where the bytes to decode end.
        :param close: Whether to write ``]`` over the byte at ``end`` (whitespace or the comma after an
            item) and decode it too; it is put back after.
        """
        assert _decode_items is not None
        buffer = self._buffer
        saved = buffer[end] if close else 0
        if close:
            buffer[end] = 0x5D  # "]"
            end += 1
        view = memoryview(buffer)[:end]
        raws: list[Any] | None = None
        try:
            try:
                raws = _decode_items(view)
            except (ValueError, RecursionError):  # msgspec.DecodeError is a ValueError
                return None
            if not buffer.isascii():
                try:
                    str(view, "utf-8")
                except UnicodeDecodeError:
                    return _UNTRUSTED
            # Copied out here: a msgspec.Raw may point into the buffer, which is cut after.
            return [bytes(raw) for raw in raws]
        finally:
            raws = None
            view.release()
            if close:
                buffer[end - 1] = saved


#: What :meth:`_ItemSplitter._items` returns for a chunk ijson must read instead.
_UNTRUSTED: Any = object()
