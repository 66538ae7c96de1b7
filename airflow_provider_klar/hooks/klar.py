"""KlarHook: talks HTTP to Klar's Open API (batches, status, connection test).

Connection rules live in :mod:`._connection`, the retry policy in :mod:`._retry` and the reading of
Klar's many answer shapes in :mod:`._responses`; this module wires them to an ``httpx`` client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
import threading
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import httpx
from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from airflow_provider_klar import __version__
from airflow_provider_klar.exceptions import (
    KlarAuthError,
    KlarConfigurationError,
    KlarError,
    KlarNotFoundError,
    KlarRequestError,
    KlarTransientError,
)
from airflow_provider_klar.hooks._connection import (
    CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    KlarConnectionSettings,
    settings_from_connection,
)
from airflow_provider_klar.hooks._limiter import ConcurrencyLimiter
from airflow_provider_klar.hooks._responses import (
    HttpLogFilter,
    Scrubber,
    batch_result_from_response,
    refuses_whole_body,
    said,
    status_from_response,
)
from airflow_provider_klar.hooks._retry import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_TIME,
    DEFAULT_MAX_RETRY_WAIT,
    RetryPolicy,
    check_retry_settings,
    failure_for_error,
    failure_for_response,
)
from airflow_provider_klar.hooks._wire import (
    SHAPES,
    WireState,
    body,
    body_size,
    cut,
    merge,
    other_envelope,
    too_large,
)
from airflow_provider_klar.resources import MAX_BATCH_SIZE, KlarResource, get_resource, resolve_version
from airflow_provider_klar.results import KlarBatchResult, KlarStatus

#: Connections kept open per hook; the operator sends batches from several threads at once.
POOL_SIZE = 16
USER_AGENT = f"airflow-provider-klar/{__version__}"
#: ``test_connection`` backs the UI's Test button: answer within seconds rather than retry for minutes.
_TEST_ATTEMPTS = 2
_TEST_MAX_WAIT = 5.0
_TEST_MAX_RETRY_TIME = 15.0


class _BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <token>``; unlike a default header, it keeps the token out of reprs."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(token='***')"


class KlarHook(BaseHook):
    """Send batches to Klar's Open API and read its status.

    One hook holds one pooled HTTP client; it is safe to call :meth:`upload` from several threads at
    once. Transient failures (network errors, timeouts, 408, 425, 429, 5xx) are retried with
    ``Retry-After`` or exponential backoff with full jitter. Every attempt takes a slot of an adaptive
    limit on the requests in flight: 429 and 503 answers halve it, good answers raise it again up to
    ``max_concurrency``; both are logged.

    :param klar_conn_id: The Airflow connection of type ``klar``: host = base URL, password = token,
        optional ``extra.api_version``, ``extra.timeout`` and ``extra.envelope``.
    :param api_version: The API version for every resource (``MM.YYYY``); overrides the connection's.
    :param timeout: Read timeout in seconds; overrides ``extra.timeout`` (default 120 s).
    :param max_attempts: Attempts per request that may fail for other reasons than rate limiting
        (network errors, timeouts, 5xx without ``Retry-After``), the first included. Rate-limit answers
        (429, or any with ``Retry-After``) are bounded by ``max_retry_time`` only.
    :param max_retry_wait: Longest wait between attempts in seconds; also caps ``Retry-After``.
    :param max_retry_time: Most seconds one request may take, its retries and waits included.
    :param max_concurrency: Most requests in flight at once from this hook (the adaptive limit's ceiling).
    :param max_wait: The former name of ``max_retry_wait``; when given, it wins.
    """

    conn_name_attr = "klar_conn_id"
    default_conn_name = "klar_default"
    conn_type = "klar"
    hook_name = "Klar"

    #: Tests set an ``httpx.MockTransport`` here; ``None`` means real HTTP.
    _transport: httpx.MockTransport | None = None

    def __init__(
        self,
        klar_conn_id: str = default_conn_name,
        api_version: str | None = None,
        *,
        timeout: float | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        max_retry_time: float = DEFAULT_MAX_RETRY_TIME,
        max_concurrency: int = POOL_SIZE,
        max_wait: float | None = None,
    ) -> None:
        super().__init__()
        if max_wait is not None:  # the former name: kept so existing code goes on working
            max_retry_wait = max_wait
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}.")
        check_retry_settings(max_attempts, max_retry_wait, max_retry_time)
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(
                f"max_concurrency must be a whole number of at least 1; got {max_concurrency!r}."
            )
        self.klar_conn_id = klar_conn_id
        self.api_version = api_version
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        #: Replace (``dataclasses.replace``) to change attempts, waits, or the sleep function in tests.
        self.retry_policy = RetryPolicy(
            max_attempts=max_attempts, max_retry_wait=max_retry_wait, max_retry_time=max_retry_time
        )
        #: The adaptive bound on requests in flight, shared by every thread using this hook.
        self.limiter = ConcurrencyLimiter(max_concurrency, log=self.log)
        self._lock = threading.Lock()
        self._settings: KlarConnectionSettings | None = None
        self._client: httpx.Client | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._wire: WireState | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(klar_conn_id={self.klar_conn_id!r}, api_version={self.api_version!r})"

    # -- connection form (Airflow 2.11 to 3.1; Airflow >= 3.2 reads get_provider_info) -------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hide the fields Klar does not use, label the password "API token", show placeholders."""
        # One source of truth: the declarative form in get_provider_info (read by Airflow >= 3.2).
        from airflow_provider_klar.get_provider_info import get_provider_info

        (declared,) = (
            c["ui-field-behaviour"]
            for c in get_provider_info()["connection-types"]
            if c["connection-type"] == cls.conn_type
        )
        return {
            "hidden_fields": list(declared["hidden-fields"]),
            "relabeling": dict(declared["relabeling"]),
            "placeholders": dict(declared["placeholders"]),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the form fields for ``extra.default_api_version``, ``extra.timeout`` and
        ``extra.email_hash_secret`` (Airflow < 3.2)."""
        # Imported here: the web server has these packages, workers and the triggerer may not.
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, PasswordField, StringField
        from wtforms.validators import NumberRange, Optional, Regexp

        return {
            "default_api_version": StringField(
                lazy_gettext("API version"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(), Regexp(r"^(0[1-9]|1[0-2])\.\d{4}$", message="Use MM.YYYY.")],
                description="For every resource Extra's api_version does not name.",
            ),
            "timeout": IntegerField(
                lazy_gettext("Read timeout (seconds)"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(), NumberRange(min=1)],
            ),
            # Masked like the token; used by KlarUploadOperator(hash_emails=True), see privacy.py.
            "email_hash_secret": PasswordField(
                lazy_gettext("E-mail hash salt"),
                widget=BS3PasswordFieldWidget(),
                description="The salt Klar issued for customer.emailHash (for hash_emails=True).",
            ),
        }

    # -- settings and clients ---------------------------------------------------------------------

    def _settings_from(self, conn: Any) -> KlarConnectionSettings:
        settings = settings_from_connection(conn)
        # Registered before anything could log it: from here on Airflow's masker redacts the token,
        # and the HTTP libraries' own (DEBUG) log lines of answers that echo it are scrubbed too.
        mask_secret(settings.token)
        HttpLogFilter.protect(settings.token)
        return settings

    @property
    def settings(self) -> KlarConnectionSettings:
        """The checked settings of the connection, read once (lazily: no I/O in ``__init__``)."""
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    self._settings = self._settings_from(self.get_connection(self.klar_conn_id))
        return self._settings

    async def _asettings(self) -> KlarConnectionSettings:
        if self._settings is None:
            getter = getattr(type(self), "aget_connection", None)
            if getter is not None:
                conn = await getter(self.klar_conn_id)
            else:  # Airflow 2 has no async connection lookup.
                conn = await asyncio.to_thread(self.get_connection, self.klar_conn_id)
            settings = self._settings_from(conn)
            with self._lock:
                if self._settings is None:
                    self._settings = settings
        return self._settings

    @property
    def base_url(self) -> str:
        """The base URL of the Klar API, from the connection (default ``https://open-api.getklar.com``)."""
        return self.settings.base_url

    def api_version_for(self, resource: str) -> str:
        """Return the API version used for ``resource``: the hook's argument, the connection's, the default.

        :param resource: A Klar resource name such as ``orders``.
        :raises KlarConfigurationError: For an unknown resource or a version not of the form ``MM.YYYY``.
        """
        try:
            return resolve_version(resource, self.api_version, self.settings.api_version)
        except ValueError as err:
            raise KlarConfigurationError(f"{err} (connection {self.klar_conn_id!r})") from None

    def _client_kwargs(self, settings: KlarConnectionSettings) -> dict[str, Any]:
        if self._ssl_context is None:
            # One verifying context per hook: building one costs milliseconds, so the async path reuses it.
            self._ssl_context = httpx.create_ssl_context()
        read = self.timeout or settings.timeout or DEFAULT_READ_TIMEOUT
        pool = max(POOL_SIZE, self.max_concurrency)
        return {
            "base_url": settings.base_url,
            "auth": _BearerAuth(settings.token),
            "headers": {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            "timeout": httpx.Timeout(read, connect=CONNECT_TIMEOUT),
            "limits": httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            "verify": self._ssl_context,
            # A redirect would be a misconfigured base URL; following it could replay a POST elsewhere.
            "follow_redirects": False,
            "transport": self._transport,
        }

    def get_conn(self) -> httpx.Client:
        """Return the hook's pooled, thread-safe ``httpx.Client`` (created on first use)."""
        if self._client is None:
            settings = self.settings
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(**self._client_kwargs(settings))
        return self._client

    def close(self) -> None:
        """Close the HTTP client and its connections; the hook makes a new one if used again."""
        with self._lock:
            client, self._client = self._client, None
            # Requests waiting for a slot end now; a hook used again gets a fresh limiter.
            limiter, self.limiter = self.limiter, ConcurrencyLimiter(self.max_concurrency, log=self.log)
        limiter.close()
        if client is not None:
            client.close()

    def __enter__(self) -> KlarHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def wire(self) -> WireState:
        """What this hook learned during the run: envelopes that work, the largest body Klar takes."""
        if self._wire is None:
            pinned = self.settings.envelope
            with self._lock:
                if self._wire is None:
                    self._wire = WireState(pinned, log=self.log)
        return self._wire

    def _scrubber(self) -> Scrubber:
        return Scrubber(self.settings.token if self._settings else None)

    # -- requests ---------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        policy: RetryPolicy | None = None,
    ) -> httpx.Response:
        client = self.get_conn()
        policy = policy or self.retry_policy
        what = f"{method} {path}"
        scrub = self._scrubber()
        limiter = self.limiter

        def attempt() -> httpx.Response:
            with limiter.slot() as slot:
                try:
                    response = client.request(method, path, params=params, content=content)
                except httpx.HTTPError as err:
                    limiter.report(slot, None)
                    if limiter.closed:
                        # Closing the hook cut this request short (the task is being stopped): not a
                        # network failure worth a retry, nor a warning saying one is coming.
                        raise KlarError(f"{what} was cut short: the Klar hook was closed.") from None
                    raise failure_for_error(
                        err, what=what, base_url=self.base_url, conn_id=self.klar_conn_id, scrub=scrub
                    ) from None
                limiter.report(slot, response.status_code)
            failure = failure_for_response(response, now=policy.clock(), scrub=scrub)
            if failure is not None:
                raise failure
            return response

        return policy.call(attempt, what=what, log=self.log)

    def _resource(self, resource: str) -> KlarResource:
        try:
            return get_resource(resource)
        except ValueError as err:
            raise KlarConfigurationError(str(err)) from None

    def upload(
        self,
        resource: str,
        records: Sequence[Mapping[str, Any]],
        *,
        encoded: Sequence[bytes] | None = None,
    ) -> KlarBatchResult:
        """Store one batch: ``POST /<version>/<resource>/json``; one outcome per record.

        :param resource: A Klar resource name such as ``orders``.
        :param records: At most 1000 JSON-ready dicts (camelCase); their ids name the outcomes.
        :param encoded: The same records already serialized to JSON, one ``bytes`` per record.
        :raises ValueError: For an empty batch or more than 1000 records (before any request).
        :raises KlarAuthError: On 401/403. :raises KlarNotFoundError: On 404.
        :raises KlarTransientError: When every attempt failed transiently.
        :raises KlarRequestError: When Klar refused the batch for no reason tied to a record.
        :raises KlarResponseError: When Klar's answer cannot be mapped to the records.
        """
        return self._send_batch("upload", resource, records, encoded)

    def validate(
        self,
        resource: str,
        records: Sequence[Mapping[str, Any]],
        *,
        encoded: Sequence[bytes] | None = None,
    ) -> KlarBatchResult:
        """Check one batch without storing it: ``POST /<version>/<resource>/validate``.

        :param resource: A Klar resource with a validate endpoint (not ``transaction-costs``).
        :param records: At most 1000 JSON-ready dicts (camelCase).
        :param encoded: The same records already serialized to JSON, one ``bytes`` per record.
        :raises KlarConfigurationError: When the resource has no validate endpoint.
        """
        return self._send_batch("validate", resource, records, encoded)

    def _send_batch(
        self,
        mode: str,
        resource: str,
        records: Sequence[Mapping[str, Any]],
        encoded: Sequence[bytes] | None,
    ) -> KlarBatchResult:
        row = self._resource(resource)
        if mode == "validate" and not row.has_validate:
            raise KlarConfigurationError(
                f"Klar has no /validate endpoint for {row.name}: use mode='upload', or validate locally."
            )
        parts = _encode_batch(row, records, encoded)
        version = self.api_version_for(row.name)
        ids = [_record_id(record, row.id_field) for record in records]
        envelope, _ = self.wire.envelope(row, mode)
        runs = cut(parts, envelope, self.wire.byte_cap)
        if len(runs) == 1:
            result = self._send_run(row, mode, version, parts, ids)
        else:
            # Klar refused a body this large before (413): send the batch in runs under the cap, in order.
            results = [(s, self._send_run(row, mode, version, parts[s:e], ids[s:e])) for s, e in runs]
            result = merge(results, results[0][1])
        enabled = getattr(self.log, "isEnabledFor", None)
        if enabled is None or enabled(logging.DEBUG):  # three passes over 1000 outcomes, for a debug line
            self.log.debug(
                "Klar answered %d to %d %s records: %d accepted, %d rejected, %d not stored.",
                result.status_code,
                len(records),
                row.name,
                result.accepted_count,
                len(result.rejected),
                len(result.not_stored),
            )
        return result

    def _send_run(
        self, row: KlarResource, mode: str, version: str, parts: Sequence[bytes], ids: Sequence[str | None]
    ) -> KlarBatchResult:
        """Send consecutive records of a batch in one request; on 413, in halves (recursively)."""
        scrub = self._scrubber()
        response, size = self._post_batch(row, mode, version, parts, ids)
        if response.status_code == 413:
            if len(parts) == 1:
                return too_large(
                    row, version=version, mode=mode, record_id=ids[0], size=size, said=said(response, scrub)
                )
            half = len(parts) // 2
            envelope, _ = self.wire.envelope(row, mode)
            self.wire.lower_cap(
                size, max(body_size(parts[:half], envelope), body_size(parts[half:], envelope))
            )
            first = self._send_run(row, mode, version, parts[:half], ids[:half])
            second = self._send_run(row, mode, version, parts[half:], ids[half:])
            return merge([(0, first), (half, second)], first)
        return batch_result_from_response(
            response,
            resource=row,
            version=version,
            mode=mode,
            ids=ids,
            conn_id=self.klar_conn_id,
            base_url=self.base_url,
            scrub=scrub,
            log=self.log,
        )

    def _post_batch(
        self, row: KlarResource, mode: str, version: str, parts: Sequence[bytes], ids: Sequence[str | None]
    ) -> tuple[httpx.Response, int]:
        """POST the records in the envelope in force; on a whole-body refusal, try the other once.

        :return: Klar's answer and the size of the body it answered.
        """
        path = row.path(version, mode)
        envelope, may_switch = self.wire.envelope(row, mode)
        content = body(parts, envelope)
        response = self._request("POST", path, params=row.query, content=content)
        scrub = self._scrubber()
        if not may_switch:
            return response, len(content)
        if not refuses_whole_body(response, ids, scrub):
            if response.status_code < 300 or response.status_code in (400, 422):
                self.wire.confirm(row, mode, envelope, switched=False, conn_id=self.klar_conn_id)
            return response, len(content)
        other = other_envelope(envelope)
        other_content = body(parts, other)
        answer = self._request("POST", path, params=row.query, content=other_content)
        if refuses_whole_body(answer, ids, scrub):
            raise KlarRequestError(
                f"Klar refused POST {path} as a whole both as {SHAPES[envelope]} (HTTP {response.status_code}"
                f", Klar said: {said(response, scrub)}) and as {SHAPES[other]} (HTTP {answer.status_code}, "
                f"Klar said: {said(answer, scrub)}); nothing was stored. The envelope is not the cause, or "
                "Klar wants neither: check the API version and the records (mode='validate' on a few).",
                http_status=answer.status_code,
            )
        if answer.status_code < 300 or answer.status_code in (400, 422):
            self.wire.confirm(row, mode, other, switched=True, conn_id=self.klar_conn_id)
        return answer, len(other_content)

    # -- status -----------------------------------------------------------------------------------

    def get_status(self, resource: str) -> KlarStatus:
        """Read Klar's status object for ``resource``: ``GET /<resource>/status``.

        :param resource: A Klar resource name such as ``orders``.
        :raises KlarAuthError: On 401/403. :raises KlarNotFoundError: On 404.
        :raises KlarTransientError: When every attempt failed transiently.
        :raises KlarResponseError: When the answer is not a status object.
        """
        return self._get_status(resource, self.retry_policy)

    def _get_status(self, resource: str, policy: RetryPolicy) -> KlarStatus:
        row = self._resource(resource)
        response = self._request("GET", row.status_path, policy=policy)
        return status_from_response(
            response,
            resource=row,
            conn_id=self.klar_conn_id,
            base_url=self.base_url,
            scrub=self._scrubber(),
        )

    async def aget_status(self, resource: str) -> KlarStatus:
        """Asynchronous :meth:`get_status`, for triggers: never blocks the event loop.

        :param resource: A Klar resource name such as ``orders``.
        """
        row = self._resource(resource)
        settings = await self._asettings()
        if self._ssl_context is None:
            # Loading the CA bundle reads files: keep it off the event loop.
            self._ssl_context = await asyncio.to_thread(httpx.create_ssl_context)
        policy = self.retry_policy
        what = f"GET {row.status_path}"
        scrub = Scrubber(settings.token)
        # A client per call: the triggerer may run each poll on another event loop, and polls are
        # minutes apart, so a kept-alive pool would buy nothing.
        async with httpx.AsyncClient(**self._client_kwargs(settings)) as client:

            async def attempt() -> httpx.Response:
                try:
                    response = await client.get(row.status_path)
                except httpx.HTTPError as err:
                    raise failure_for_error(
                        err, what=what, base_url=settings.base_url, conn_id=self.klar_conn_id, scrub=scrub
                    ) from None
                failure = failure_for_response(response, now=policy.clock(), scrub=scrub)
                if failure is not None:
                    raise failure
                return response

            response = await policy.acall(attempt, what=what, log=self.log)
        return status_from_response(
            response,
            resource=row,
            conn_id=self.klar_conn_id,
            base_url=settings.base_url,
            scrub=scrub,
        )

    def test_connection(self) -> tuple[bool, str]:
        """Read ``/orders/status`` and say whether the connection works, and if not, why. Never raises.

        Backs the UI's Test button and ``airflow connections test``. The messages speak of "this
        connection": the UI tests a copy stored under a random temporary id, which would mean nothing.
        """
        policy = dataclasses.replace(
            self.retry_policy,
            max_attempts=min(self.retry_policy.max_attempts, _TEST_ATTEMPTS),
            max_retry_wait=min(self.retry_policy.max_retry_wait, _TEST_MAX_WAIT),
            max_retry_time=min(self.retry_policy.max_retry_time, _TEST_MAX_RETRY_TIME),
        )
        try:
            status = self._get_status("orders", policy)
        except KlarAuthError as err:
            message = f"Bad token: {err}"
        except KlarNotFoundError as err:
            message = f"Wrong URL or version: {err}"
        except KlarTransientError as err:
            message = self._unreachable(err)
        except KlarError as err:
            message = str(err)
        except Exception as err:  # the Test button must show a message, not a stack trace
            message = self._scrubber()(f"Unexpected error: {type(err).__name__}: {err}")
        else:
            return True, f"Connected: {status.total} orders received so far"
        return False, self._this_connection(message)

    def _this_connection(self, message: str) -> str:
        quoted = repr(self.klar_conn_id)
        for named, this in (
            (f"Connection {quoted}", "This connection"),
            (f"connection {quoted}", "this connection"),
        ):
            message = message.replace(named, this)
        return message.replace(quoted, "this connection")

    def _unreachable(self, err: KlarTransientError) -> str:
        """Advice for a test that failed on every attempt, fitting what failed (network, 429 or 5xx)."""
        where = self._settings.base_url if self._settings else "Klar"
        if err.http_status == 429:
            return (
                f"Klar at {where} is limiting the rate (HTTP 429 on every attempt): test again in a minute."
            )
        if err.http_status is not None:
            return (
                f"Klar at {where} answered HTTP {err.http_status} on every attempt: a problem on "
                "Klar's side; test again later."
            )
        # The retry loop raises its verdict from the last attempt's failure, which names the reason.
        reason = getattr(err.__context__, "description", None)
        if reason and "Timeout" in reason:
            return (
                f"No answer from {where} ({reason}). Check the Base URL and Port of this connection and any "
                "proxy or firewall on the way; if Klar is just slow, raise its Read timeout (seconds)."
            )
        because = f" ({reason})" if reason else ""
        return (
            f"Cannot reach {where}{because}. Check the Base URL and Port of this connection (nothing may be "
            "listening there), and any proxy or firewall between Airflow and Klar."
        )


def _record_id(record: Mapping[str, Any], id_field: str) -> str | None:
    if type(record) is dict and type(value := record.get(id_field)) is str:
        return value  # the usual case, 1000 times per batch: no isinstance against an ABC
    value = record.get(id_field) if isinstance(record, Mapping) else getattr(record, id_field, None)
    return None if value is None else str(value)


def _encode_batch(
    row: KlarResource, records: Sequence[Mapping[str, Any]], encoded: Sequence[bytes] | None
) -> list[bytes]:
    count = len(records)
    if count == 0:
        raise ValueError(f"No {row.name} records to send: a batch needs at least one record.")
    if count > MAX_BATCH_SIZE:
        raise ValueError(
            f"{count} {row.name} records in one batch; Klar takes at most {MAX_BATCH_SIZE} per request."
        )
    if encoded is not None:
        if len(encoded) != count:
            raise ValueError(f"encoded has {len(encoded)} items but records has {count}; they must match.")
        return [bytes(part) for part in encoded]
    parts = []
    for index, record in enumerate(records):
        try:
            text = json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            parts.append(text.encode())
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"Record {index} (id {_record_id(record, row.id_field)}) of the {row.name} batch cannot be "
                f"sent as JSON: {err}."
            ) from None
    return parts
