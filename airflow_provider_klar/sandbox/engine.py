"""The sandbox's core, free of HTTP: parse a batch, validate it with the package's models, store it.

:class:`Sandbox` holds the state (store, fault knobs, request log) that the FastAPI app serves and that
:class:`~airflow_provider_klar.sandbox.server.SandboxServer` reads in-process.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_klar.sandbox.contract import CONTRACT, MAX_OBJECTS, ResourceContract
from airflow_provider_klar.sandbox.faults import FaultInjector
from airflow_provider_klar.sandbox.responses import (
    Answer,
    Problem,
    RecordCheck,
    echo_authorization,
    nest_error,
    render_batch,
)
from airflow_provider_klar.sandbox.store import Store, StoredRow, utc_timestamp

if TYPE_CHECKING:
    from airflow_provider_klar.models import RecordValidator

#: How many requests the log keeps (the oldest are forgotten first).
REQUEST_LOG_SIZE = 100_000

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class BadBody(ValueError):
    """The request body is not JSON, or not wrapped the way the resource expects."""


def _describe(wrapper: str | None, resource: str) -> str:
    if wrapper is None:
        return f"a JSON array of {resource} objects ([{{...}}, ...])"
    return f'a JSON object {{"{wrapper}": [...]}} holding the array of {resource} objects'


def parse_batch(body: bytes, wrapper: str | None, resource: str) -> tuple[list[Any], list[str] | None]:
    """Parse a request body into its records and, for bare arrays, each record's JSON text as sent.

    Slicing each element's text out of the array (``raw_decode`` walks it once) lets the store keep
    the JSON as sent without serializing every record again.

    :param body: The raw request body.
    :param wrapper: ``None`` when the body must be a JSON array, else the key of the wrapping object.
    :param resource: The resource name, for messages.
    :returns: The records, and their JSON texts (``None`` when the body was wrapped).
    :raises BadBody: When the body is not JSON or has the wrong wrapper; the message names the
        expected shape.
    """
    expected = _describe(wrapper, resource)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"The body is not UTF-8 ({exc.reason}); send {expected}.") from None
    pos = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    first = text[pos : pos + 1]
    try:
        if first == "[" and wrapper is None:
            return _walk_array(text, pos)
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadBody(f"The body is not valid JSON ({exc}); send {expected}.") from None
    if wrapper is None:
        raise BadBody(f"Expected {expected}; got a JSON {_kind(parsed)}.")
    items = parsed.get(wrapper) if isinstance(parsed, dict) else None
    if not isinstance(items, list):
        got = f"a JSON {_kind(parsed)}"
        if isinstance(parsed, dict):
            got += f" with keys {sorted(parsed)}" if parsed else " without keys"
        raise BadBody(f"Expected {expected}; got {got}.")
    return items, None


def _walk_array(text: str, pos: int) -> tuple[list[Any], list[str]]:
    items: list[Any] = []
    raws: list[str] = []
    pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text[pos : pos + 1] == "]":
        pos += 1
    else:
        while True:
            item, end = _DECODER.raw_decode(text, pos)
            items.append(item)
            raws.append(text[pos:end])
            pos = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
            sep = text[pos : pos + 1]
            if sep == "]":
                pos += 1
                break
            if sep != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
            pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
    if _WHITESPACE.match(text, pos).end() != len(text):  # type: ignore[union-attr]
        raise json.JSONDecodeError("Extra data", text, pos)
    return items, raws


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "value")


def record_key(row: ResourceContract, record: Mapping[str, Any]) -> str:
    """Return the upsert key of ``record``: its id, or a JSON array of the key fields."""
    if len(row.key_fields) == 1:
        return str(record.get(row.key_fields[0]))
    return json.dumps([record.get(name) for name in row.key_fields], separators=(",", ":"))


def _flag(query: Mapping[str, str], name: str) -> bool:
    return str(query.get(name, "")).strip().lower() in {"true", "1", "yes"}


class Sandbox:
    """The state of one sandbox: stored records, status counters, fault knobs and the request log.

    :param token: The bearer token requests must carry.
    :param db: A SQLite file to keep records in across restarts; ``None`` for memory.
    :param faults: Initial fault knobs (see :class:`~airflow_provider_klar.sandbox.faults.FaultInjector`).
    """

    def __init__(self, *, token: str = "dev-token", db: str | None = None, **faults: Any) -> None:
        self.token = token
        self.store = Store(db)
        self.faults = FaultInjector(**faults)
        self._log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._log_lock = threading.Lock()
        # Notified at every change of the log, so tests wait on a condition instead of sleeping.
        self._log_changed = threading.Condition(self._log_lock)
        self._validators: dict[tuple[str, str], RecordValidator] = {}
        self._validators_lock = threading.Lock()

    def validator(self, resource: str, version: str) -> RecordValidator:
        """Return the (cached) model validator of ``resource`` at ``version``."""
        key = (resource, version)
        found = self._validators.get(key)
        if found is None:
            from airflow_provider_klar.models import RecordValidator

            with self._validators_lock:
                found = self._validators.get(key) or RecordValidator(resource, version)
                self._validators[key] = found
        return found

    def check(self, row: ResourceContract, version: str, items: list[Any]) -> list[RecordCheck]:
        """Validate each record with the package's models (errors only; pitfall warnings are ignored)."""
        validator = self.validator(row.name, version)
        checks = []
        for index, item in enumerate(items):
            errors: tuple[Any, ...]
            if not isinstance(item, dict):
                errors = (Problem("", f"each {row.name} object must be a JSON object", item),)
            else:
                try:
                    errors = tuple(validator.validate(item).errors)
                except (RecursionError, ValueError, TypeError, OverflowError) as exc:
                    # A hostile object must be that object's rejection, never a 500 for the batch.
                    errors = (Problem("", f"cannot be validated ({type(exc).__name__}: {exc})"),)
            checks.append(RecordCheck(index, item, errors))
        return checks

    def submit(
        self,
        row: ResourceContract,
        version: str,
        mode: str,
        body: bytes,
        query: Mapping[str, str],
        *,
        authorization: str = "",
    ) -> tuple[Answer, int | None]:
        """Handle ``POST /<version>/<resource>/{json,validate}`` after authentication.

        :param row: The resource's contract.
        :param version: The API version of the path (one the contract names).
        :param mode: ``upload`` for ``/json``, ``validate`` for ``/validate``.
        :param body: The raw request body.
        :param query: The query parameters.
        :param authorization: The request's ``Authorization`` header, echoed in error texts when the
            ``echo_auth`` switch is on.
        :returns: Klar's answer, and the number of objects in the body (``None`` when unparsable).
            Side effects (``/json`` only): stores records and updates the status counters.
        """
        answer, n = self._submit(row, version, mode, body, query)
        if self.faults.echo_auth:
            answer = echo_authorization(answer, authorization)
        return answer, n

    def _submit(
        self, row: ResourceContract, version: str, mode: str, body: bytes, query: Mapping[str, str]
    ) -> tuple[Answer, int | None]:
        uploading = mode == "upload"
        limit = self.faults.max_body_bytes
        if limit is not None and len(body) > limit:
            # What a proxy in front of Klar answers: the request never reaches Klar, no counter moves.
            return nest_error(
                413, f"Request body of {len(body)} bytes exceeds the limit of {limit} bytes."
            ), None
        wrapper = None if self.faults.envelope(row.name) == "array" else "items"
        try:
            items, raws = parse_batch(body, wrapper, row.name)
        except (BadBody, RecursionError) as exc:
            if uploading:
                self.store.record_failure(row.name)
            if isinstance(exc, RecursionError):
                return nest_error(400, "The body is nested too deeply to be read."), None
            return nest_error(400, str(exc)), None
        if len(items) > MAX_OBJECTS:
            if uploading:
                self.store.record_failure(row.name)
            message = f"At most {MAX_OBJECTS} objects per request; this one has {len(items)}. Split it."
            return nest_error(413, message), len(items)
        checks = self.check(row, version, items)
        answer, to_store = render_batch(
            row,
            mode,
            checks,
            failed_order_ids=_flag(query, "failedOrderIds"),
            new_errors=_flag(query, "newErrors"),
        )
        if not uploading:
            return answer, len(items)
        if to_store:
            rows = [
                StoredRow(
                    key=record_key(row, c.record),
                    id=None if c.record.get(row.id_field) is None else str(c.record[row.id_field]),
                    body=raws[c.index] if raws is not None else json.dumps(c.record, separators=(",", ":")),
                )
                for c in to_store
            ]
            self.store.upsert(row.name, version, rows)
        if answer.status < 300:
            self.store.record_success(row.name, len(to_store))
        else:
            self.store.record_failure(row.name)
        return answer, len(items)

    def status(self, resource: str) -> dict[str, Any]:
        """Return ``GET /<resource>/status``'s body: counts as strings, ISO times or ``null``."""
        return self.store.status(resource).to_api()

    def log_request(self, entry: dict[str, Any]) -> None:
        """Append one entry to the request log (when the request arrives, before it is answered)."""
        with self._log_changed:
            self._log.append(entry)
            self._log_changed.notify_all()

    def update_request(self, entry: dict[str, Any], **fields: Any) -> None:
        """Fill in fields of a logged entry (``status``, ``state``, ``records``...), waking waiters."""
        with self._log_changed:
            entry.update(fields)
            self._log_changed.notify_all()

    def _entries(self, include_get: bool) -> list[dict[str, Any]]:
        # Copies: an entry of a request in progress keeps changing under the lock.
        return [dict(e) for e in self._log if include_get or e["method"] == "POST"]

    def requests(self, *, include_get: bool = False) -> list[dict[str, Any]]:
        """Return the request log, oldest first: POSTs only unless ``include_get``.

        A request is in the log from the moment it arrives. Each entry: ``time``, ``method``, ``path``,
        ``query`` (dict), ``records`` (objects in the body, or ``None`` when not parsed), ``bytes``
        (the body's size, for POSTs to ``/json`` and ``/validate``), ``status``
        (``None`` for a dropped connection), ``fault`` (the knob that fired, or ``None``),
        ``duration_ms``, and ``state``: ``received`` (not answered yet), ``answered``, ``dropped``
        (connection closed without an answer) or ``failed`` (no answer could be sent). Every field is
        final before the client can see the answer.

        :param include_get: Also return status reads.
        """
        with self._log_lock:
            return self._entries(include_get)

    def wait_for_requests(
        self,
        count: int | Callable[[list[dict[str, Any]]], bool],
        *,
        timeout: float = 30.0,
        include_get: bool = False,
        finished: bool = True,
    ) -> list[dict[str, Any]]:
        """Wait until the log holds ``count`` requests (or a condition holds); return the log then.

        :param count: How many requests to wait for, or a function of the log that says when to stop.
        :param timeout: Seconds to wait at most (a bound against a hang, not a synchronisation).
        :param include_get: Also count status reads.
        :param finished: Count only requests that were answered, dropped or failed (not ``received``).
        :raises TimeoutError: When the condition does not hold in time; the message shows the log's size.
        """

        def ready(entries: list[dict[str, Any]]) -> bool:
            if callable(count):
                return count(entries)
            done = [e for e in entries if not finished or e["state"] != "received"]
            return len(done) >= count

        deadline = time.monotonic() + timeout
        with self._log_changed:
            while True:
                entries = self._entries(include_get)
                if ready(entries):
                    return entries
                left = deadline - time.monotonic()
                if left <= 0:
                    want = "the condition" if callable(count) else f"{count} requests"
                    raise TimeoutError(
                        f"The Klar sandbox's log has {len(entries)} entries after {timeout:g} s; "
                        f"waited for {want}."
                    )
                self._log_changed.wait(left)

    def counts(self) -> dict[str, int]:
        """Return the number of stored records per resource, every resource listed."""
        stored = self.store.counts()
        return {name: stored.get(name, 0) for name in CONTRACT}

    def reset(self) -> None:
        """Forget every record, counter, logged request and fault."""
        self.store.reset()
        with self._log_changed:
            self._log.clear()
            self._log_changed.notify_all()
        self.faults.reset()

    def close(self) -> None:
        """Release the database."""
        self.store.close()


def log_entry(method: str, path: str, query: Mapping[str, str]) -> dict[str, Any]:
    """Return a fresh request-log entry (``records``, ``status``, ``fault``, ``state`` filled in later)."""
    return {
        "time": utc_timestamp(),
        "method": method,
        "path": path,
        "query": dict(query),
        "records": None,
        "bytes": None,
        "status": None,
        "fault": None,
        "duration_ms": None,
        "state": "received",
    }
