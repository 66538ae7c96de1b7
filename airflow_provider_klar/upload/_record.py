"""The one type every reader yields (kept apart so that the format modules need not import each other)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    # Not imported at run time: the exceptions module imports Airflow, which validation workers must
    # not (see upload/parallel.py).
    from airflow_provider_klar.exceptions import KlarSourceError


_S = TypeVar("_S")


# Not frozen: one is made per record read, and a frozen dataclass costs four times as much to make
# (1.1 µs, 5% of validating an order). Nothing changes one after it is made.
@dataclass(slots=True)
class SourceRecord:
    """One record read from a source, or the reason one line of it could not be read.

    :param position: 0-based index over the whole source, across files, in reading order; malformed
        lines take a position too, blank lines do not.
    :param source: Where the record came from: the file (path or URL without connection id or
        credentials), or ``"records"`` for ``records=``.
    :param line: 1-based line number in JSON Lines and CSV files (a CSV row's first line); the 0-based
        item index in JSON array files and in ``records=``.
    :param record: The parsed record (a dict, or the pydantic model given in ``records=``); ``None``
        when malformed; :data:`UNPARSED` for a line of a JSON Lines file read lazily and
        :data:`UNPARSED_ITEM` for an item of a JSON array file read lazily, which are parsed only by
        whoever needs the dict (see :func:`parsed` and :func:`is_unparsed`).
    :param error: Why the line could not be read, starting with where it is
        (``"line 17: invalid JSON: Expecting ',' delimiter at column 35"``); ``None`` when fine.
    :param raw: For a malformed line, its text for the rejected file (a JSON Lines line whole up to
        1,000,000 characters, other texts cut to 10,000). For a
        record read from a JSON Lines file, the line's bytes as read (byte order mark removed); for an
        item of a JSON array file read lazily, the item's bytes (inner whitespace kept): the upload
        sends them unchanged when validation proves ``record`` is exactly what Klar gets.
    """

    position: int
    source: str
    line: int | None
    record: Any
    error: str | None = None
    raw: str | bytes | None = None

    @property
    def ok(self) -> bool:
        """Whether the record was read (it may still be invalid for Klar)."""
        return self.error is None


class Unparsed:
    """The type of :data:`UNPARSED` and :data:`UNPARSED_ITEM`: a record read lazily, its bytes in ``raw``.

    Test a record with ``type(record) is Unparsed`` (or :func:`is_unparsed`): which of the two it is
    says how :func:`parsed` reads the bytes.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        # Pickled by name, so that a copy is the module's own instance (records are told apart by identity).
        return self._name


#: The :attr:`SourceRecord.record` of a JSON Lines line read lazily: its bytes are in ``raw``, and
#: whether they are a JSON object at all is not known yet. The upload's per-record step checks such a
#: line in one pass over its bytes; anything that needs the dict calls :func:`parsed` first.
UNPARSED: Any = Unparsed("UNPARSED")
#: The same for an item of a JSON array file read lazily. Its bytes are known to be one JSON value;
#: unlike a line, an item in the layout of the provider's rejected file is not read as the record it
#: holds (the eager array reader never did).
UNPARSED_ITEM: Any = Unparsed("UNPARSED_ITEM")


def is_unparsed(record: Any) -> bool:
    """Whether ``record`` (a :attr:`SourceRecord.record`) stands for bytes not parsed yet."""
    return type(record) is Unparsed


def parsed(src: _S) -> _S:
    """Return ``src`` with its record parsed (or the reason it cannot be), as an eager reader yields it.

    :param src: A record from any reader; one not read lazily is returned as it is.
    """
    lazy: Any = src
    kind = lazy.record
    if type(kind) is not Unparsed:
        return src
    # Imported here: the JSON readers import this module.
    from airflow_provider_klar.upload._array import parse_json_item
    from airflow_provider_klar.upload._json import parse_json_line

    parse = parse_json_item if kind is UNPARSED_ITEM else parse_json_line
    return cast(_S, parse(lazy.raw, lazy.line, lazy.position, lazy.source))


def cut(text: str, limit: int = 10_000) -> str:
    """Return ``text`` cut to ``limit`` characters, marking the cut with ``...``."""
    return text if len(text) <= limit else text[:limit] + "..."


def source_error(
    source: str,
    where: str,
    reason: str,
    *,
    position: int,
    line: int | None = None,
    offset: int | None = None,
) -> KlarSourceError:
    """Return the error for a source that stops being readable at ``where``; the caller raises it.

    :param source: The file's display name.
    :param where: Where it broke, for people: ``"item 1500"``, ``"after line 1268"``.
    :param reason: Why, for people.
    :param position: The position the next record would have had in the whole source.
    :param line: The line or item index where it broke, when known.
    :param offset: The byte offset in the (decompressed) file, when known.
    """
    from airflow_provider_klar.exceptions import KlarSourceError

    message = f"{source}, {where}: {reason.rstrip('.')}. The rest of {source} was not read."
    return KlarSourceError(message, source=source, position=position, line=line, offset=offset)
