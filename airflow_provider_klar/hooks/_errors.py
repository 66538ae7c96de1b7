"""Read the error lists of Klar's answers into errors tied to a record index or id.

Klar reports errors in three forms (see ``klar-api.md``): flat objects ``{id, key, message, value}``
with ``key = "<index>.<path>"``, strings ``"orders.0.createdAt: (1.69e+22) has to be ... (isTimestamp)"``,
and class-validator trees ``{property, value, constraints, children}``. All three become
:class:`LocatedError`: an index (or an id), a path relative to the record, a message and a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: Names under which Klar (or a proxy in front of it) may wrap the array of records.
WRAPPERS = frozenset(
    {
        "items",
        "orders",
        "refunds",
        "cogs",
        "logistics-costs",
        "logisticsCosts",
        "transaction-costs",
        "transactionCosts",
        "records",
        "data",
        "body",
    }
)

# "orders.0.createdAt: <rest>" or "[0].lineItems[1].sku: <rest>"
_KEY_COLON = re.compile(r"^\s*(?P<key>[\w\-\[\]]+(?:\.[\w\-\[\]]+)*)\s*:\s*(?P<rest>.*)$", re.S)
# "0.createdAt must be a number" (NestJS style: the path, a space, the message)
_KEY_SPACE = re.compile(r"^\s*(?P<key>[\w\-\[\]]*\d[\w\-\[\]]*(?:\.[\w\-\[\]]+)+)\s+(?P<rest>.+)$", re.S)
_BRACKET = re.compile(r"\[([^\]]*)\]")
_MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class LocatedError:
    """One error of Klar's answer and where it points.

    :param index: Position of the record in the batch, when the answer gives one.
    :param id: The record id the answer names, when it names one.
    :param path: Dotted path relative to the record (``lineItems.0.taxes.0.taxRate``).
    :param message: Klar's reason.
    :param value: The offending value Klar echoed, when it did.
    """

    index: int | None
    id: str | None
    path: str
    message: str
    value: Any = None


def split_key(key: Any) -> tuple[int | None, str]:
    """Split Klar's error key into the record index and the path inside the record.

    ``"0.lineItems.0.taxRate"`` -> ``(0, "lineItems.0.taxRate")``; ``"orders.3.id"`` -> ``(3, "id")``;
    ``"[2].sku"`` -> ``(2, "sku")``; ``"orderId"`` -> ``(None, "orderId")``.

    :param key: The key (an int is an index alone).
    """
    if isinstance(key, bool) or key is None:
        return None, ""
    if isinstance(key, int):
        return (key, "") if key >= 0 else (None, "")
    text = _BRACKET.sub(r".\1", str(key).strip()).strip(".")
    parts = [p for p in text.split(".") if p != ""]
    if parts and parts[0] in WRAPPERS and len(parts) > 1 and parts[1].isdigit():
        parts = parts[1:]
    if parts and parts[0].isdigit():
        return int(parts[0]), ".".join(parts[1:])
    return None, ".".join(parts)


def _value_from_text(text: str) -> Any:
    # Klar prints the offending value in parentheses: a number, a quoted string or plain text.
    try:
        return json.loads(text)
    except ValueError:
        return text


def _leading_parenthesis(rest: str) -> tuple[str | None, str]:
    if not rest.startswith("("):
        return None, rest
    depth = 0
    for position, char in enumerate(rest):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return rest[1:position], rest[position + 1 :].strip()
    return None, rest


def parse_error_string(text: str) -> LocatedError:
    """Read one string error such as ``"orders.0.createdAt: (1.69e+22) has to be a unix timestamp!"``.

    A string without a recognisable record position comes back with ``index=None`` and the whole
    text as message.

    :param text: The error string from Klar's ``errors`` (or a NestJS ``message``) list.
    """
    for pattern in (_KEY_COLON, _KEY_SPACE):
        match = pattern.match(text)
        if match is None:
            continue
        index, path = split_key(match["key"])
        if index is None:
            continue
        value_text, message = _leading_parenthesis(match["rest"].strip())
        value = _value_from_text(value_text) if value_text is not None else None
        return LocatedError(index, None, path, message or text.strip(), value)
    return LocatedError(None, None, "", text.strip())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _id_text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _flat_error(item: Mapping[str, Any]) -> LocatedError:
    key = next((item[k] for k in ("key", "path", "field", "property") if k in item), None)
    index, path = split_key(key)
    message = item.get("message") or item.get("msg") or item.get("error") or "invalid"
    if isinstance(message, list):
        message = "; ".join(_text(m) for m in message)
    return LocatedError(index, _id_text(item.get("id")), path, _text(message), item.get("value"))


def _walk_class_validator(
    node: Mapping[str, Any], trail: tuple[str, ...], depth: int
) -> Iterator[LocatedError]:
    prop = node.get("property")
    if prop is not None and prop != "":
        trail = (*trail, str(prop))
    constraints = node.get("constraints")
    if isinstance(constraints, Mapping) and constraints:
        index, path = split_key(".".join(trail))
        message = "; ".join(_text(m) for m in constraints.values())
        yield LocatedError(index, None, path, message, node.get("value"))
    children = node.get("children")
    if isinstance(children, list) and depth < _MAX_DEPTH:
        for child in children:
            if isinstance(child, Mapping):
                yield from _walk_class_validator(child, trail, depth + 1)


def is_class_validator_node(item: Any) -> bool:
    """Whether ``item`` looks like a class-validator ``ValidationError`` node."""
    return isinstance(item, Mapping) and ("constraints" in item or "children" in item) and "property" in item


def located_errors(items: Any) -> list[LocatedError]:
    """Read any of Klar's error lists (flat objects, strings, class-validator nodes, or a mix).

    :param items: A list of errors, one error, or a mapping ``key -> message``.
    """
    if items is None:
        return []
    if isinstance(items, str) or is_class_validator_node(items):
        items = [items]
    elif isinstance(items, Mapping):
        if any(k in items for k in ("key", "message", "path")):
            items = [items]
        else:  # {"0.orderId": "must be a string", ...}
            items = [{"key": k, "message": v} for k, v in items.items()]
    if not isinstance(items, list):
        return [LocatedError(None, None, "", _text(items))]
    found: list[LocatedError] = []
    for item in items:
        if isinstance(item, str):
            found.append(parse_error_string(item))
        elif is_class_validator_node(item):
            found.extend(_walk_class_validator(item, (), 0))
        elif isinstance(item, Mapping):
            found.append(_flat_error(item))
        elif item is not None:
            found.append(LocatedError(None, None, "", _text(item)))
    return found
