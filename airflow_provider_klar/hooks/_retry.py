"""The retry policy: which failures are transient, how long to wait, when to give up.

Retrying a POST is safe because Klar is idempotent by record id: a batch sent twice overwrites itself.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from airflow_provider_klar.exceptions import (
    KlarConfigurationError,
    KlarRequestError,
    KlarTransientError,
)

#: Answers that mean "try again later"; everything else is final (400, 401, 403, 404, 413, 422...).
RETRYABLE_STATUS: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

#: Transport failures worth retrying. Not all of ``httpx.TransportError``: a malformed URL
#: (``UnsupportedProtocol``) or a request httpx refused to send (``LocalProtocolError``) fails again.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


class WarningLogger(Protocol):
    """Anything with a ``warning`` method taking %-style arguments (stdlib or structlog logger)."""

    def warning(self, msg: Any, /, *args: Any) -> object: ...


class TransientFailure(Exception):
    """One attempt failed in a way worth retrying (raised and caught inside the retry loop only).

    :param description: What happened, e.g. ``HTTP 503`` or ``ConnectError: ...``; never holds the token.
    :param status: The HTTP status, when there was an answer.
    :param retry_after: Seconds the server asked to wait (already parsed), if it said.
    """

    def __init__(self, description: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return the seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    :param value: The header's value, or ``None``.
    :param now: The current Unix time, for HTTP dates; defaults to :func:`time.time`.
    :return: Seconds (never negative), or ``None`` when absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            # RFC 9110 dates are GMT; parsedate_to_datetime leaves "-0000" naive.
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def failure_for_error(err: httpx.HTTPError, *, what: str, base_url: str, conn_id: str) -> Exception:
    """Return what to raise when ``httpx`` could not complete a request.

    :param err: The exception ``httpx`` raised.
    :param what: The request, e.g. ``GET /orders/status``.
    :param base_url: Where it went, for the message.
    :param conn_id: The connection id, for the message.
    :return: A :class:`TransientFailure` for failures worth retrying, else a final :class:`KlarError`.
    """
    text = f"{type(err).__name__}: {err}"
    if "CERTIFICATE_VERIFY_FAILED" in str(err):
        # Retrying cannot fix a certificate; verification stays on, so say how to trust a private CA.
        return KlarConfigurationError(
            f"The TLS certificate of {base_url} could not be verified ({err}). If a proxy re-signs TLS, "
            f"point SSL_CERT_FILE to its CA bundle; check the host of connection {conn_id!r}."
        )
    if isinstance(err, RETRYABLE_ERRORS):
        return TransientFailure(text)
    return KlarRequestError(
        f"Could not send {what} to {base_url}: {text}. Check the host of connection {conn_id!r}."
    )


def failure_for_response(response: httpx.Response, *, now: float | None = None) -> TransientFailure | None:
    """Return a :class:`TransientFailure` when ``response`` is worth retrying, else ``None``.

    :param response: Klar's answer.
    :param now: The current Unix time, for ``Retry-After`` dates.
    """
    if response.status_code not in RETRYABLE_STATUS:
        return None
    return TransientFailure(
        f"HTTP {response.status_code}",
        status=response.status_code,
        retry_after=parse_retry_after(response.headers.get("Retry-After"), now=now),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures.

    :param max_attempts: Attempts in all, the first included (at least 1).
    :param max_wait: Longest wait between two attempts, in seconds; also caps ``Retry-After``.
    :param initial_wait: Base of the exponential backoff: the n-th wait is uniform in
        ``[0, min(max_wait, initial_wait * 2 ** (n - 1))]`` ("full jitter").
    :param sleep: How to wait in the synchronous path; tests pass a recorder so they run instantly.
    :param async_sleep: How to wait in the asynchronous path.
    :param clock: Current Unix time, to turn a ``Retry-After`` date into seconds.
    """

    max_attempts: int = 5
    max_wait: float = 60.0
    initial_wait: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1; got {self.max_attempts}.")
        if self.max_wait < 0 or self.initial_wait < 0:
            raise ValueError("max_wait and initial_wait must not be negative.")

    def wait_for(self, attempt: int, failure: BaseException | None) -> float:
        """Return the seconds to wait after failed attempt number ``attempt`` (1-based).

        :param attempt: The number of the attempt that just failed.
        :param failure: What made it fail.
        """
        if isinstance(failure, TransientFailure) and failure.retry_after is not None:
            return min(failure.retry_after, self.max_wait)
        ceiling = min(self.max_wait, self.initial_wait * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        return self.wait_for(state.attempt_number, failure)

    def _retry_kwargs(self, what: str, log: WarningLogger) -> dict[str, object]:
        def before_sleep(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s failed with %s (attempt %d of %d); retrying in %.1f s.",
                what,
                getattr(failure, "description", failure),
                state.attempt_number,
                self.max_attempts,
                wait,
            )

        return {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": self._wait,
            "retry": retry_if_exception_type(TransientFailure),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def _give_up(self, what: str, failure: TransientFailure) -> KlarTransientError:
        return KlarTransientError(
            f"{what} failed with {failure.description} on all {self.max_attempts} attempt(s). "
            "Klar may be down or limiting the rate: try again later, or raise max_attempts/max_wait.",
            http_status=failure.status,
        )

    def call(self, attempt: Callable[[], httpx.Response], *, what: str, log: WarningLogger) -> httpx.Response:
        """Run ``attempt`` until it returns a final answer or the attempts are used up.

        :param attempt: Sends the request once; raises :class:`TransientFailure` to ask for a retry.
        :param what: The request for messages, e.g. ``POST /07.2025/orders/json``.
        :param log: Where each retry is logged, at warning level.
        :raises KlarTransientError: When every attempt failed transiently.
        """
        retrying = Retrying(sleep=self.sleep, **self._retry_kwargs(what, log))  # type: ignore[arg-type]
        try:
            return retrying(attempt)
        except TransientFailure as failure:
            raise self._give_up(what, failure) from None

    async def acall(
        self, attempt: Callable[[], Awaitable[httpx.Response]], *, what: str, log: WarningLogger
    ) -> httpx.Response:
        """Asynchronous :meth:`call`, waiting with :attr:`async_sleep`.

        :param attempt: Sends the request once; raises :class:`TransientFailure` to ask for a retry.
        :param what: The request for messages.
        :param log: Where each retry is logged, at warning level.
        :raises KlarTransientError: When every attempt failed transiently.
        """
        retrying = AsyncRetrying(sleep=self.async_sleep, **self._retry_kwargs(what, log))  # type: ignore[arg-type]
        try:
            return await retrying(attempt)
        except TransientFailure as failure:
            raise self._give_up(what, failure) from None
