"""JSON for hostile values: nesting depth measured without recursion, and a strict encoder that never fails.

The per-record step and the rejected file meet whatever a source holds: records nested 100,000 levels
deep, ``NaN``, integers of thousands of digits, lone surrogates, values JSON does not know. The standard
encoders recurse (and raise ``RecursionError`` long before such depths), write ``NaN`` (which is not
JSON) or refuse; the functions here walk with an explicit stack instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_DEPTH", "NON_FINITE_NOTE", "deepest_path", "strict_json"]

#: The deepest nesting of objects and arrays a record may have (the record itself is level 1). The
#: JSON Lines parser refuses deeper lines too, so every source draws the line at the same place.
MAX_DEPTH = 200

#: The note a rejected-file line carries when its values held numbers JSON cannot write.
NON_FINITE_NOTE = (
    'numbers that are not finite (NaN, Infinity) are written in this file as the strings "NaN", '
    '"Infinity" and "-Infinity", since JSON has no such numbers; Klar cannot store them either'
)

_encode_strict = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_CONTAINERS = (dict, list, tuple)
# Digits per chunk when writing integers longer than Python's int-to-str limit (4,300 digits).
_CHUNK = 4000


def deepest_path(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """Return where ``value`` is nested deeper than ``limit`` levels, or ``None`` when it is not.

    The walk uses an explicit stack, so any depth is measured without ``RecursionError``.

    :param value: A decoded JSON value (dicts, lists, scalars).
    :param limit: The deepest nesting allowed; ``value`` itself, when a container, is level 1.
    :return: The dotted path to the first container past the limit, its first and last steps kept
        (``"foo.x.x.x.x.x.(191 more levels).x.x.x.x"``), or ``""`` when ``value`` itself is past the limit.
    """
    if not isinstance(value, _CONTAINERS):
        return None
    # Each entry: (container, its depth, index of its parent entry in `seen`, its key in the parent).
    seen: list[tuple[int, Any]] = []
    stack: list[tuple[Any, int, int, Any]] = [(value, 1, -1, None)]
    while stack:
        node, depth, parent, key = stack.pop()
        seen.append((parent, key))
        if depth > limit:
            return _path(seen, len(seen) - 1)
        me = len(seen) - 1
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for child_key, child in children:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1, me, child_key))
    return None


def _path(seen: list[tuple[int, Any]], index: int) -> str:
    keys: list[str] = []
    while index > 0:
        parent, key = seen[index]
        keys.append(str(key))
        index = parent
    keys.reverse()
    if len(keys) > 12:
        keys = [*keys[:6], f"({len(keys) - 10} more levels)", *keys[-4:]]
    return ".".join(keys)


def strict_json(value: Any) -> tuple[str, bool]:
    """Write ``value`` as strict JSON text, whatever it holds; never raises.

    Numbers that are not finite become the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``; values
    JSON does not know (datetimes, Decimals, sets...) their ``str()``; lone surrogates are written as
    ``\\u`` escapes, so the text always encodes as UTF-8; any depth and integer length are written.

    :param value: What to write.
    :return: The text, and whether a non-finite number was turned into a string (so the caller can say
        so).
    """
    try:
        text = _encode_strict(value)
        # A lone surrogate passes the encoder and fails here; the slow writer escapes it.
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError, MemoryError):
        pass
    else:
        return text, False
    changed = [False]
    return "".join(_tokens(value, changed)), changed[0]


def _tokens(value: Any, changed: list[bool]) -> Iterator[str]:
    # A stack of values still to write; plain punctuation is pushed as _Punct so it is not re-encoded.
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is _Punct:
            yield item.text
            continue
        if isinstance(item, dict):
            stack.append(_Punct("}"))
            pairs = list(item.items())
            for i in range(len(pairs) - 1, -1, -1):
                key, child = pairs[i]
                stack.append(child)
                prefix = "," if i else ""
                stack.append(_Punct(f"{prefix}{_string(key if isinstance(key, str) else str(key))}:"))
            stack.append(_Punct("{"))
        elif isinstance(item, (list, tuple)):
            stack.append(_Punct("]"))
            for i in range(len(item) - 1, -1, -1):
                stack.append(item[i])
                if i:
                    stack.append(_Punct(","))
            stack.append(_Punct("["))
        else:
            yield _scalar(item, changed)


class _Punct:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _scalar(value: Any, changed: list[bool]) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return _integer(int(value))
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(float(value))
        changed[0] = True
        return '"NaN"' if math.isnan(value) else ('"Infinity"' if value > 0 else '"-Infinity"')
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return "".join(_tokens(dump(mode="json", by_alias=True, exclude_unset=True), changed))
        except Exception:  # a model that cannot dump itself is written as its text
            pass
    try:
        text = str(value)
    except Exception:  # nothing about a hostile value may stop the file being written
        text = f"<{type(value).__name__}>"
    return _string(text)


def _string(text: str) -> str:
    encoded: str = json.encoder.encode_basestring(text)  # type: ignore[attr-defined]
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: only the \\u escape writes it as valid JSON and valid UTF-8.
        encoded = json.encoder.encode_basestring_ascii(text)  # type: ignore[attr-defined]
    return encoded


def _integer(value: int) -> str:
    try:
        return str(value)
    except ValueError:
        # Longer than Python's int-to-str limit: written in chunks, each well under the limit.
        sign, value = ("-" if value < 0 else ""), abs(value)
        base = 10**_CHUNK
        chunks: list[int] = []
        while value:
            value, rest = divmod(value, base)
            chunks.append(rest)
        head, *tail = reversed(chunks)
        return sign + str(head) + "".join(str(c).zfill(_CHUNK) for c in tail)
