"""Klar's answer shapes, rendered from the sandbox's per-record validation results.

Which shape Klar uses depends on the resource, the endpoint and two query flags (``klar-api.md``,
"Responses"), all read from the sandbox's own :mod:`~airflow_provider_klar.sandbox.contract`. The
decision is :func:`render_batch`; everything else here draws one shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from airflow_provider_klar.sandbox.contract import ResourceContract

_MISSING = object()


class ErrorLike(Protocol):
    """One reason a record is invalid, as the models' validator reports it."""

    @property
    def path(self) -> str:
        """Dotted camelCase path inside the record; empty for the whole record."""

    @property
    def message(self) -> str:
        """What is wrong."""

    @property
    def value(self) -> Any:
        """The offending value, when known."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A reason the sandbox itself finds (not the models'): e.g. an object that is not a JSON object.

    :param path: Dotted path inside the record; empty for the whole record.
    :param message: What is wrong.
    :param value: The offending value.
    """

    path: str
    message: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class RecordCheck:
    """The sandbox's verdict on one record of a batch.

    :param index: Position in the batch (0-based).
    :param record: The record as parsed from the request (any JSON value).
    :param errors: Why it is invalid; empty when valid.
    """

    index: int
    record: Any
    errors: tuple[ErrorLike, ...] = ()

    @property
    def valid(self) -> bool:
        """Whether the record has no error."""
        return not self.errors

    def raw_id(self, id_field: str) -> Any:
        """Return the id field exactly as sent (``1111`` stays a number), or ``None``."""
        return self.record.get(id_field) if isinstance(self.record, dict) else None


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status code, JSON body (``None`` for an empty body) and extra headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] | None = None

    def content(self) -> bytes:
        """Return the body as bytes (empty for ``None``)."""
        return b"" if self.body is None else json.dumps(self.body, separators=(",", ":")).encode()


def nest_error(status: int, message: str) -> Answer:
    """Return a whole-request error in the shape of Klar's framework (NestJS): statusCode, message, error."""
    reasons = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        413: "Payload Too Large",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if status in reasons:
        body["error"] = reasons[status]
    return Answer(status, body)


def lookup(record: Any, path: str) -> Any:
    """Return the value at dotted ``path`` in ``record`` (list indexes as numbers), or a sentinel."""
    value = record
    for part in path.split(".") if path else ():
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _value(check: RecordCheck, error: ErrorLike) -> Any:
    found = lookup(check.record, error.path)
    return error.value if found is _MISSING else found


_CONSTRAINTS = (
    ("isTimestamp", ("timestamp", "seconds")),
    ("isDefined", ("required", "missing", "must be present", "should not be")),
    ("isBoolean", ("boolean", "bool")),
    ("isInt", ("integer",)),
    ("isNumber", ("number", "float", "numeric", "finite")),
    ("isString", ("string", "str ")),
    ("isArray", ("array", "list")),
    ("isObject", ("object", "dictionary", "mapping")),
    ("isISO", ("iso", "currency", "country")),
    ("min", ("positive", "negative", "greater", "less", "at least", "at most")),
)
_SHOULD_BE = re.compile(r"\bbe an? (?:valid )?(\w+)")


def constraint_name(message: str) -> str:
    """Guess the class-validator constraint name (``isNumber``...) that best labels ``message``."""
    text = message.lower()
    match = _SHOULD_BE.search(text)
    candidates = [match.group(1), text] if match else [text]
    for candidate in candidates:
        for name, words in _CONSTRAINTS:
            if any(word in candidate for word in words):
                return name
    return "isValid"


def klar_message(error: ErrorLike) -> str:
    """Return the message as class-validator words it: led by the property name (``orderId must be...``)."""
    prop = error.path.rsplit(".", 1)[-1]
    if not prop or prop.isdigit() or error.message.startswith(prop):
        return error.message
    return f"{prop} {error.message}"


def flat_errors(checks: Sequence[RecordCheck], id_field: str) -> list[dict[str, Any]]:
    """Render the flat shape's errors: ``{"id", "key": "<index>.<path>", "message", "value"}``."""
    return [
        {
            "id": check.raw_id(id_field),
            "key": f"{check.index}.{error.path}" if error.path else str(check.index),
            "message": klar_message(error),
            "value": _value(check, error),
        }
        for check in checks
        for error in check.errors
    ]


def _text(value: Any) -> str:
    if value is _MISSING:
        return "undefined"
    return value if isinstance(value, str) else json.dumps(value)


def string_errors(checks: Sequence[RecordCheck], resource: str) -> list[str]:
    """Render the plain-string errors: ``"orders.0.createdAt: (1.6e+22) <message> (isTimestamp)"``."""
    lines = []
    for check in checks:
        for error in check.errors:
            where = f"{resource}.{check.index}" + (f".{error.path}" if error.path else "")
            found = lookup(check.record, error.path)
            shown = error.value if found is _MISSING and error.value is not None else found
            lines.append(f"{where}: ({_text(shown)}) {error.message} ({constraint_name(error.message)})")
    return lines


def _node(target: Any, prop: str, value: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"target": target}
    if value is not _MISSING:  # class-validator leaves "value" out (undefined) for a missing field
        node["value"] = value
    node["property"] = prop
    node["children"] = []
    return node


def _add_constraint(node: dict[str, Any], error: ErrorLike) -> None:
    constraints = node.setdefault("constraints", {})
    name = base = constraint_name(error.message)
    n = 1
    while name in constraints:
        n += 1
        name = f"{base}{n}"
    constraints[name] = klar_message(error)


def class_validator_errors(checks: Sequence[RecordCheck]) -> list[dict[str, Any]]:
    """Render the legacy class-validator array: one node per invalid record, nested through ``children``.

    The top node of each record has the record's index as ``property`` and the record itself as
    ``target`` (class-validator would repeat the whole batch there; the sandbox keeps answers small).
    """
    tree = []
    for check in checks:
        if check.valid:
            continue
        root = _node(check.record, str(check.index), check.record)
        for error in check.errors:
            node, container = root, check.record
            for part in error.path.split(".") if error.path else ():
                child = next((c for c in node["children"] if c["property"] == part), None)
                value = lookup(container, part)
                if child is None:
                    child = _node(container, part, value)
                    node["children"].append(child)
                node, container = child, value
            _add_constraint(node, error)
        tree.append(root)
    return tree


def _ids(checks: Sequence[RecordCheck], id_field: str) -> list[str]:
    return [str(raw) for raw in (c.raw_id(id_field) for c in checks) if raw is not None]


def success(row: ResourceContract, mode: str) -> Answer:
    """Return the answer to a fully valid batch of ``row`` in ``mode`` (``upload`` or ``validate``)."""
    found = row.success(mode)
    return Answer(found.code, None if found.body is None else dict(found.body))


def render_batch(
    row: ResourceContract,
    mode: str,
    checks: Sequence[RecordCheck],
    *,
    failed_order_ids: bool,
    new_errors: bool,
) -> tuple[Answer, list[RecordCheck]]:
    """Decide Klar's answer to a batch and which records it stores.

    - every record valid: the resource's success answer; all are stored (``upload`` mode).
    - orders ``/json`` with ``failedOrderIds=true``, some valid and some not: 207 ``PARTIALLY_VALID``
      with flat errors, ``failedOrderIds`` and ``successfulOrderIds``; only the valid ones are stored.
    - otherwise 400 and nothing stored, in the shape the flags ask for:
      ``failedOrderIds`` + ``newErrors`` (orders): flat errors and ``failedOrderIds``;
      ``failedOrderIds`` alone (orders): ``orderIds`` and plain-string errors;
      ``newErrors`` (any resource; transaction-costs always): flat errors;
      no flag: the class-validator array.

    ``failedOrderIds`` means nothing to the other resources, as on Klar.

    :param row: The resource's contract.
    :param mode: ``upload`` (``/json``) or ``validate``.
    :param checks: One verdict per record, in batch order.
    :param failed_order_ids: Whether the request asked for ``failedOrderIds=true``.
    :param new_errors: Whether the request asked for ``newErrors=true``.
    :returns: The answer, and the records to store.
    """
    invalid = [c for c in checks if not c.valid]
    valid = [c for c in checks if c.valid]
    storing = mode == "upload"
    if not invalid:
        return success(row, mode), valid if storing else []
    failed_order_ids = failed_order_ids and row.partial_success
    new_errors = new_errors or row.flat_by_default
    if failed_order_ids and storing and valid:
        body = {
            "status": "PARTIALLY_VALID",
            "errors": flat_errors(invalid, row.id_field),
            "failedOrderIds": _ids(invalid, row.id_field),
            "successfulOrderIds": _ids(valid, row.id_field),
        }
        return Answer(207, body), valid
    if failed_order_ids and new_errors:
        body = {
            "status": "INVALID",
            "errors": flat_errors(invalid, row.id_field),
            "failedOrderIds": _ids(invalid, row.id_field),
        }
    elif failed_order_ids:
        body = {
            "status": "INVALID",
            "orderIds": _ids(invalid, row.id_field),
            "errors": string_errors(invalid, row.name),
        }
    elif new_errors:
        body = {"status": "INVALID", "errors": flat_errors(invalid, row.id_field)}
    else:
        return Answer(400, class_validator_errors(invalid)), []
    return Answer(400, body), []


#: The answer header carrying the request's ``Authorization`` when ``echo_auth`` is on.
ECHO_HEADER = "X-Echo-Authorization"


def _echo_texts(node: Any, note: str) -> Any:
    # Message texts: a "message", each "constraints" value, and plain strings in an "errors" list.
    if isinstance(node, list):
        return [_echo_texts(item, note) for item in node]
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if isinstance(out.get("message"), str):
        out["message"] = f"{out['message']} {note}"
    if isinstance(out.get("constraints"), dict):
        out["constraints"] = {k: f"{v} {note}" for k, v in out["constraints"].items()}
    if isinstance(out.get("errors"), list):
        out["errors"] = [f"{e} {note}" if isinstance(e, str) else _echo_texts(e, note) for e in out["errors"]]
    if isinstance(out.get("children"), list):
        out["children"] = _echo_texts(out["children"], note)
    return out


def echo_authorization(answer: Answer, authorization: str) -> Answer:
    """Return ``answer`` with the request's ``Authorization`` header repeated in its error texts.

    Careless APIs and proxies do this; the sandbox does it on request (``echo_auth``) so a client's
    token scrubbing can be tested. Successful answers are left alone.

    :param answer: The answer to an erroneous request (status 207 or 400 and above).
    :param authorization: The header as received (e.g. ``Bearer <token>``).
    """
    if answer.status < 300 and answer.status != 207:
        return answer
    note = f"(request Authorization: {authorization})"
    headers = {**dict(answer.headers or {}), ECHO_HEADER: authorization}
    return replace(answer, body=_echo_texts(answer.body, note), headers=headers)


def proxy_page(status: int, reason: str, authorization: str | None) -> bytes:
    """Return a plain-text error page as a proxy sends it (not JSON), optionally echoing the header."""
    echoed = f"\nRequest Authorization: {authorization}" if authorization is not None else ""
    return f"{status} {reason}\n{echoed}\n".encode()
