"""Turn Klar's final answer to a request into a result or an exception.

For a batch, every shape of ``klar-api.md`` becomes one :class:`RecordOutcome` per record sent:

- 2xx with ``{"status": "VALID"}`` or an empty body: every record accepted.
- 207 ``PARTIALLY_VALID``: the records named by ``errors``/``failedOrderIds`` rejected, the rest stored.
- 400 (or 422) with errors: the records with errors rejected; the others ``NOT_STORED`` (Klar stored
  nothing of the batch, so they are safe to send again).

Anything else raises; an answer that cannot be mapped is never counted as accepted.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from airflow_provider_klar.exceptions import (
    KlarAuthError,
    KlarError,
    KlarNotFoundError,
    KlarRequestError,
    KlarResponseError,
)
from airflow_provider_klar.hooks._errors import LocatedError, located_errors
from airflow_provider_klar.hooks._retry import WarningLogger
from airflow_provider_klar.resources import KlarResource
from airflow_provider_klar.results import FieldError, KlarBatchResult, KlarStatus, OutcomeState, RecordOutcome

_SNIPPET = 300
_FAILED_ID_KEYS = ("failedOrderIds", "orderIds", "failedIds")
_SUCCESS_ID_KEYS = ("successfulOrderIds", "successfulIds")
_NO_REASON = "Klar listed this record as failed without giving a reason."


class Scrubber:
    """Removes the token from whatever Klar (or a proxy in front of it) says back.

    An API or proxy may echo the ``Authorization`` header into its error texts, values or headers; every
    answer is scrubbed before it is read (:meth:`bytes`), so no message, value or outcome derived from it
    can hold the token, whether echoed bare, as ``Bearer <token>`` or deep inside nested JSON.

    :param secret: The token, or ``None`` when unknown.
    """

    MASK = "***"

    def __init__(self, secret: str | None) -> None:
        self._secret = secret or None
        forms = {secret} if secret else set()
        if secret:
            # How the token reads inside a JSON string when the server escaped it ("/" as "\/", ...).
            forms.add(json.dumps(secret)[1:-1])
            forms.add(json.dumps(secret)[1:-1].replace("/", "\\/"))
        # Longest first, so an escaped form is not half-replaced by a shorter one.
        self._forms = sorted(forms, key=len, reverse=True)
        self._byte_forms = [form.encode() for form in self._forms]

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, self.MASK)
        return text

    def bytes(self, content: bytes) -> bytes:
        """Return ``content`` (a raw body) with every form of the token replaced."""
        for form in self._byte_forms:
            content = content.replace(form, self.MASK.encode())
        return content

    def value(self, value: Any) -> Any:
        """Return a decoded JSON value with the token replaced in every string, keys included.

        Iterative, so a deeply nested answer cannot exhaust the stack.
        """
        if not self._secret:
            return value
        if isinstance(value, str):
            return self(value)
        if not isinstance(value, (dict, list)):
            return value
        root: list[Any] = [value]
        stack: list[tuple[Any, Any]] = [(root, 0)]
        while stack:
            parent, key = stack.pop()
            item = parent[key]
            if isinstance(item, str):
                parent[key] = self(item)
            elif isinstance(item, list):
                stack.extend((item, i) for i in range(len(item)))
            elif isinstance(item, dict):
                renamed = {self(k) if isinstance(k, str) else k: v for k, v in item.items()}
                item.clear()
                item.update(renamed)
                stack.extend((item, k) for k in item)
        return root[0]

    def __repr__(self) -> str:
        return "Scrubber(***)"


class HttpLogFilter(logging.Filter):
    """Scrubs the tokens of every hook from the HTTP libraries' own log lines.

    At DEBUG level ``httpcore`` logs every answer's headers: a proxy that echoes the token in a header
    would put it in the log. One filter serves the process; :meth:`protect` adds a token to it.
    """

    #: The loggers ``httpx`` and ``httpcore`` write to (a logger's filters do not apply to its children).
    LOGGERS = (
        "httpx",
        "httpcore.connection",
        "httpcore.http11",
        "httpcore.http2",
        "httpcore.proxy",
        "httpcore.socks",
    )
    _installed: HttpLogFilter | None = None
    _install_lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__()
        self._scrubbers: dict[str, Scrubber] = {}

    @classmethod
    def protect(cls, token: str) -> None:
        """Scrub ``token`` from the HTTP libraries' log lines from now on.

        :param token: The API token of a connection.
        """
        with cls._install_lock:
            if cls._installed is None:
                cls._installed = cls()
                for name in cls.LOGGERS:
                    logging.getLogger(name).addFilter(cls._installed)
            cls._installed._scrubbers.setdefault(token, Scrubber(token))

    def filter(self, record: logging.LogRecord) -> bool:
        if self._scrubbers:
            text = original = record.getMessage()
            for scrub in list(self._scrubbers.values()):
                text = scrub(text)
            if text != original:
                record.msg, record.args = text, ()
        return True


class _Empty:
    def __repr__(self) -> str:
        return "EMPTY"


#: Stands for an empty body (distinct from a JSON ``null``, which is not a documented answer).
EMPTY: Any = _Empty()


def _decode(response: httpx.Response, scrub: Scrubber) -> Any:
    """Return the JSON body, :data:`EMPTY` for no body, or the text when it is not JSON; token scrubbed."""
    content = scrub.bytes(response.content)
    if not content.strip():
        return EMPTY
    try:
        payload = json.loads(content)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return scrub(content.decode(response.encoding or "utf-8", errors="replace"))
    # The raw replacement misses only a token spelled with escapes: then scrub the decoded value too.
    return scrub.value(payload) if b"\\" in content else payload


def _snippet(payload: Any, scrub: Scrubber) -> str:
    if payload is EMPTY:
        return "(empty body)"
    text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
    text = " ".join(scrub(text).split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def _what(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path}"


def final_error(
    response: httpx.Response,
    payload: Any,
    *,
    conn_id: str,
    base_url: str,
    version: str | None,
    scrub: Scrubber,
) -> KlarError:
    """Return the exception for an answer that is neither a success nor about single records.

    :param response: Klar's answer (after retries).
    :param payload: The decoded body.
    :param conn_id: The connection id, named in the message.
    :param base_url: The base URL, named in 404 messages.
    :param version: The API version used, if the path had one.
    :param scrub: Removes the token from the body's text.
    """
    code = response.status_code
    what = _what(response)
    said = _snippet(payload, scrub)
    if code in (401, 403):
        return KlarAuthError(
            f"Klar refused {what} with HTTP {code}: check the token of connection {conn_id!r} "
            f"(in Klar: Store Settings > Data Sources > Klar Api > Access Token). Klar said: {said}"
        )
    if code == 404:
        version_note = f" (API version {version})" if version else ""
        return KlarNotFoundError(
            f"Klar answered 404 to {what} at {base_url}: check the base URL and API version{version_note} "
            f"of connection {conn_id!r}. Klar said: {said}"
        )
    if code == 413:
        return KlarRequestError(
            f"Klar refused {what} as too large (HTTP 413, {len(response.request.content)} bytes): "
            f"send smaller batches (lower batch_size). Klar said: {said}",
            http_status=code,
        )
    if 300 <= code < 400:
        return KlarResponseError(
            f"Klar redirected {what} (HTTP {code}) to {scrub(response.headers.get('Location') or '')!r}: "
            f"set the host of connection {conn_id!r} to the final URL.",
            http_status=code,
        )
    if 400 <= code < 500:
        return KlarRequestError(
            f"Klar refused {what} with HTTP {code} without naming a record. Klar said: {said}",
            http_status=code,
        )
    return KlarResponseError(
        f"Klar answered {what} with HTTP {code}, which the provider does not expect; nothing is counted "
        f"as accepted. Klar said: {said}",
        http_status=code,
    )


def status_from_response(
    response: httpx.Response, *, resource: KlarResource, conn_id: str, base_url: str, scrub: Scrubber
) -> KlarStatus:
    """Return the :class:`KlarStatus` of a ``GET /<resource>/status`` answer, or raise.

    :param response: Klar's final answer.
    :param resource: The resource asked about.
    :param conn_id: The connection id, for messages.
    :param base_url: The base URL, for messages.
    :param scrub: Removes the token from the body's text.
    """
    payload = _decode(response, scrub)
    if not 200 <= response.status_code < 300:
        raise final_error(response, payload, conn_id=conn_id, base_url=base_url, version=None, scrub=scrub)
    if not isinstance(payload, Mapping):
        raise KlarResponseError(
            f"Klar's answer to {_what(response)} is not a status object: {_snippet(payload, scrub)}",
            http_status=response.status_code,
        )
    try:
        return KlarStatus.from_api(resource.name, payload)
    except (TypeError, ValueError) as err:
        raise KlarResponseError(
            f"Klar's status for {resource.name} cannot be read ({err}): {_snippet(payload, scrub)}",
            http_status=response.status_code,
        ) from None


@dataclass
class _Attribution:
    """Errors of one answer, sorted by the records they belong to."""

    count: int
    errors: dict[int, list[FieldError]] = field(default_factory=lambda: defaultdict(list))
    failed: set[int] = field(default_factory=set)
    loose: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> set[int]:
        return set(self.errors) | self.failed


def _indexes_by_id(ids: Sequence[str | None]) -> dict[str, list[int]]:
    by_id: dict[str, list[int]] = defaultdict(list)
    for index, record_id in enumerate(ids):
        if record_id is not None:
            by_id[record_id].append(index)
    return by_id


def _id_list(payload: Mapping[str, Any], keys: tuple[str, ...]) -> list[str] | None:
    for key in keys:
        value = payload.get(key)
        if isinstance(value, list):
            return [str(v) for v in value if v is not None]
    return None


def _attribute(payload: Any, ids: Sequence[str | None]) -> _Attribution:
    by_id = _indexes_by_id(ids)
    found = _Attribution(len(ids))
    if isinstance(payload, list):
        items: Any = payload
    elif isinstance(payload, Mapping):
        items = payload.get("errors")
        if items is None and isinstance(payload.get("message"), list):  # NestJS's default 400 body
            items = payload["message"]
        for record_id in _id_list(payload, _FAILED_ID_KEYS) or []:
            if record_id in by_id:
                found.failed.update(by_id[record_id])
            else:
                found.loose.append(f"Klar reported id {record_id!r} as failed, but no record sent has it.")
    else:
        items = None
    for error in located_errors(items):
        _place(found, error, ids, by_id)
    return found


def _place(
    found: _Attribution, error: LocatedError, ids: Sequence[str | None], by_id: Mapping[str, list[int]]
) -> None:
    targets: list[int] = []
    in_range = error.index is not None and 0 <= error.index < found.count
    if in_range and (error.id is None or ids[error.index] in (None, error.id)):  # type: ignore[index]
        targets = [error.index]  # type: ignore[list-item]
    elif error.id is not None and error.id in by_id:
        # The id is the stronger evidence when it contradicts the position.
        targets = list(by_id[error.id])
    elif in_range:
        targets = [error.index]  # type: ignore[list-item]
    if not targets:
        where = f" (key {error.index}.{error.path})" if error.index is not None else ""
        who = f" for id {error.id!r}" if error.id is not None else ""
        found.loose.append(f"{error.path + ': ' if error.path else ''}{error.message}{who}{where}".strip())
        return
    for index in targets:
        found.errors[index].append(FieldError(error.path, error.message, error.value))


def _reasons(found: _Attribution, index: int) -> tuple[FieldError, ...]:
    return tuple(found.errors.get(index) or [FieldError("", _NO_REASON)])


def _rejection_outcomes(found: _Attribution, ids: Sequence[str | None]) -> tuple[RecordOutcome, ...] | None:
    """Outcomes of a refused batch: records with errors rejected, the others not stored."""
    rejected = found.rejected
    if not rejected:
        if not found.loose:
            return None
        # Reasons that name no record still concern the batch: reject every record with them.
        loose = tuple(FieldError("", message) for message in found.loose)
        return tuple(RecordOutcome(i, ids[i], OutcomeState.REJECTED, loose) for i in range(found.count))
    return tuple(
        RecordOutcome(i, ids[i], OutcomeState.REJECTED, _reasons(found, i))
        if i in rejected
        else RecordOutcome(i, ids[i], OutcomeState.NOT_STORED)
        for i in range(found.count)
    )


def _partial_outcomes(
    found: _Attribution, payload: Mapping[str, Any], ids: Sequence[str | None]
) -> tuple[RecordOutcome, ...] | None:
    """Outcomes of a partial success (207): the failed records rejected, the others stored."""
    successful = _id_list(payload, _SUCCESS_ID_KEYS)
    stored = set(successful or ())
    # Ids of which some copy has an error of its own (by position): the other copies may be the stored ones.
    ids_with_own_errors = {ids[j] for j in found.errors}
    loose = tuple(FieldError("", message) for message in found.loose)
    if not found.rejected and not loose and successful is None:
        return None  # "partially valid" but nothing says which part
    outcomes = []
    for i, record_id in enumerate(ids):
        if i in found.errors or (
            i in found.failed
            and not (
                # A duplicate id both failed and stored: the copy with its own error is the failed one.
                record_id in stored and record_id in ids_with_own_errors
            )
        ):
            outcome = RecordOutcome(i, record_id, OutcomeState.REJECTED, _reasons(found, i))
        elif record_id is not None and record_id in stored:
            outcome = RecordOutcome(i, record_id, OutcomeState.ACCEPTED)
        elif loose and not found.rejected:
            # Klar gave reasons but tied none to a record: every record it did not confirm is suspect.
            outcome = RecordOutcome(i, record_id, OutcomeState.REJECTED, loose)
        elif successful is not None:
            # Klar listed what it stored and this record is not on the list: sending it again is safe.
            outcome = RecordOutcome(i, record_id, OutcomeState.NOT_STORED)
        else:
            outcome = RecordOutcome(i, record_id, OutcomeState.ACCEPTED)
        outcomes.append(outcome)
    return tuple(outcomes)


def _status_word(payload: Any) -> str | None:
    if isinstance(payload, Mapping) and isinstance(payload.get("status"), str):
        return payload["status"].strip().upper()
    return None


def _mentions_failures(payload: Any) -> bool:
    if not isinstance(payload, Mapping):
        return False
    return bool(payload.get("errors")) or bool(_id_list(payload, _FAILED_ID_KEYS))


def outcomes_for(
    status_code: int, payload: Any, ids: Sequence[str | None]
) -> tuple[tuple[RecordOutcome, ...] | None, str]:
    """Map an answer to one outcome per record, without raising.

    :param status_code: The HTTP status.
    :param payload: The decoded JSON body, or :data:`EMPTY` for an empty body.
    :param ids: The id of each record sent, in order.
    :return: The outcomes (``None`` when the answer cannot be mapped) and the kind of answer:
        ``"success"``, ``"partial"`` or ``"rejection"``.
    """
    word = _status_word(payload)
    if 200 <= status_code < 300:
        if payload is EMPTY or (word == "VALID" and not _mentions_failures(payload)):
            return tuple(RecordOutcome(i, ids[i], OutcomeState.ACCEPTED) for i in range(len(ids))), "success"
        if word == "INVALID":
            return _rejection_outcomes(_attribute(payload, ids), ids), "rejection"
        if isinstance(payload, Mapping) and (status_code == 207 or word in ("PARTIALLY_VALID", "VALID")):
            return _partial_outcomes(_attribute(payload, ids), payload, ids), "partial"
        return None, "success"
    return _rejection_outcomes(_attribute(payload, ids), ids), "rejection"


def refuses_whole_body(response: httpx.Response, ids: Sequence[str | None], scrub: Scrubber) -> bool:
    """Whether Klar refused a batch as a whole, naming no record (a 400/422 that may mean "wrong envelope").

    True for a 400 or 422 whose body is not JSON, is empty, or whose errors attribute to no record of
    the batch by index or id.

    :param response: Klar's final answer.
    :param ids: The id of each record sent, in order.
    :param scrub: Removes the token from the body.
    """
    if response.status_code not in (400, 422):
        return False
    payload = _decode(response, scrub)
    if isinstance(payload, str) or payload is EMPTY:
        return True
    return not _attribute(payload, ids).rejected


def said(response: httpx.Response, scrub: Scrubber) -> str:
    """Return what Klar's answer says, scrubbed and shortened, for a message."""
    return _snippet(_decode(response, scrub), scrub)


def batch_result_from_response(
    response: httpx.Response,
    *,
    resource: KlarResource,
    version: str,
    mode: str,
    ids: Sequence[str | None],
    conn_id: str,
    base_url: str,
    scrub: Scrubber,
    log: WarningLogger,
) -> KlarBatchResult:
    """Return the per-record result of a batch POST, or raise when the answer says nothing per record.

    :param response: Klar's final answer (after retries).
    :param resource: The resource the batch was sent to.
    :param version: The API version used.
    :param mode: ``upload`` or ``validate``.
    :param ids: The id of each record sent, in order.
    :param conn_id: The connection id, for messages.
    :param base_url: The base URL, for messages.
    :param scrub: Removes the token from the body's text.
    :param log: Where oddities are logged.
    :raises KlarAuthError: On 401/403. :raises KlarNotFoundError: On 404.
    :raises KlarRequestError: On another final 4xx that names no record.
    :raises KlarResponseError: On an answer that cannot be mapped to the records.
    """
    code = response.status_code
    payload = _decode(response, scrub)
    if not (200 <= code < 300 or code in (400, 422)):
        raise final_error(response, payload, conn_id=conn_id, base_url=base_url, version=version, scrub=scrub)
    if isinstance(payload, str):  # not JSON: an HTML error page or plain text
        outcomes, kind = None, ("success" if code < 300 else "rejection")
    else:
        outcomes, kind = outcomes_for(code, payload, ids)
    if outcomes is None:
        said = _snippet(payload, scrub)
        if kind == "rejection":
            raise KlarRequestError(
                f"Klar refused {_what(response)} with HTTP {code} without naming a record or a reason the "
                f"provider can read; nothing was stored. Klar said: {said}",
                http_status=code,
            )
        raise KlarResponseError(
            f"Klar answered {_what(response)} with HTTP {code} and a body the provider cannot read as "
            f"success; no record is counted as accepted. Check the API version {version}. Klar said: {said}",
            http_status=code,
        )
    if kind == "success" and code not in resource.success_codes(mode):
        log.warning(
            "Klar answered %d to %s, not one of the expected codes %s; the body says the batch is valid.",
            code,
            _what(response),
            sorted(resource.success_codes(mode)),
        )
    if kind != "success" and any(not o.errors or o.accepted for o in outcomes):
        # Reasons tied to no record are in no outcome when other records took the blame: keep them here.
        for message in _attribute(payload, ids).loose:
            log.warning("Klar reported an error tied to no record: %s", scrub(message))
    return KlarBatchResult(
        resource=resource.name, api_version=version, mode=mode, status_code=code, outcomes=outcomes
    )
