"""The retry policy: which failures are transient, how long to wait, when to give up.

Retrying a POST is safe because Klar is idempotent by record id: a batch sent twice overwrites itself.

A request has two budgets: ``max_attempts`` counts the failures that say something is wrong (network
errors, timeouts, 5xx), and ``max_retry_time`` bounds the time spent on one request, waits included.
Rate-limit answers (429, and any answer with ``Retry-After``) ask the client to come back later rather
than report a fault, so they count only against the time: a storm of them cannot use up the attempts
in seconds.
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
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception_type

from airflow_provider_klar.exceptions import (
    KlarConfigurationError,
    KlarRequestError,
    KlarTransientError,
)

#: Attempts per request, counting failures other than rate limiting (see the module docstring).
DEFAULT_MAX_ATTEMPTS = 10
#: Longest single wait between two attempts, in seconds; also caps ``Retry-After``.
DEFAULT_MAX_RETRY_WAIT = 60.0
#: Most seconds one request may take, its retries and waits included.
DEFAULT_MAX_RETRY_TIME = 600.0

#: The settings to suggest when retries ran out: every one exists on the hook, operator and sensor.
RETRY_SETTINGS_HINT = (
    "raise max_attempts or max_retry_time (arguments of KlarUploadOperator, KlarStatusSensor and KlarHook)"
)

#: Answers that mean "try again later"; everything else is final (400, 401, 403, 404, 413, 422...).
RETRYABLE_STATUS: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

_SAID = 200

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
    :param said: What the body said (scrubbed, shortened), for the message when retries run out.
    """

    def __init__(
        self,
        description: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        said: str | None = None,
    ):
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after
        self.said = said

    @property
    def rate_limited(self) -> bool:
        """Whether the server asked to come back later (429, or any ``Retry-After``) rather than failed."""
        return self.status == 429 or self.retry_after is not None


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


def failure_for_error(
    err: httpx.HTTPError,
    *,
    what: str,
    base_url: str,
    conn_id: str,
    scrub: Callable[[str], str] | None = None,
) -> Exception:
    """Return what to raise when ``httpx`` could not complete a request.

    :param err: The exception ``httpx`` raised.
    :param what: The request, e.g. ``GET /orders/status``.
    :param base_url: Where it went, for the message.
    :param conn_id: The connection id, for the message.
    :param scrub: Removes the token from the error's text (a proxy may have put it there).
    :return: A :class:`TransientFailure` for failures worth retrying, else a final :class:`KlarError`.
    """
    text = f"{type(err).__name__}: {err}"
    if scrub is not None:
        text = scrub(text)
    if "CERTIFICATE_VERIFY_FAILED" in str(err):
        # Retrying cannot fix a certificate; verification stays on, so say how to trust a private CA.
        return KlarConfigurationError(
            f"The TLS certificate of {base_url} could not be verified ({text}). If a proxy re-signs TLS, "
            f"point SSL_CERT_FILE to its CA bundle; check the host of connection {conn_id!r}."
        )
    if isinstance(err, RETRYABLE_ERRORS):
        return TransientFailure(text)
    return KlarRequestError(
        f"Could not send {what} to {base_url}: {text}. Check the host of connection {conn_id!r}."
    )


def failure_for_response(
    response: httpx.Response,
    *,
    now: float | None = None,
    scrub: Callable[[str], str] | None = None,
) -> TransientFailure | None:
    """Return a :class:`TransientFailure` when ``response`` is worth retrying, else ``None``.

    :param response: Klar's answer.
    :param now: The current Unix time, for ``Retry-After`` dates.
    :param scrub: Removes the token from the body's text, which the final message quotes.
    """
    if response.status_code not in RETRYABLE_STATUS:
        return None
    text = " ".join(response.text.split()) if response.content else ""
    if scrub is not None:
        text = scrub(text)
    return TransientFailure(
        f"HTTP {response.status_code}",
        status=response.status_code,
        retry_after=parse_retry_after(response.headers.get("Retry-After"), now=now),
        said=(text if len(text) <= _SAID else text[:_SAID] + "...") or None,
    )


class _Budget:
    """What one request has used of its policy: counted attempts and time (one per call, not shared)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = policy.monotonic()
        self.counted = 0
        self.rate_limited = 0
        self.exhausted = ""

    def elapsed(self) -> float:
        return self.policy.monotonic() - self.started

    def record(self, failure: BaseException | None) -> int:
        """Count ``failure``; return how many failures of its kind (counted or rate-limited) there were."""
        if isinstance(failure, TransientFailure) and failure.rate_limited:
            self.rate_limited += 1
            return self.rate_limited
        self.counted += 1
        return self.counted

    def stop(self, state: RetryCallState) -> bool:
        """Tenacity's stop hook; it runs after the wait was chosen, so the wait counts against the time."""
        policy = self.policy
        if self.counted >= policy.max_attempts:
            self.exhausted = f"{self.counted} of {policy.max_attempts} counted attempt(s) failed"
            return True
        upcoming = state.upcoming_sleep or 0.0
        if self.elapsed() + upcoming > policy.max_retry_time:
            self.exhausted = (
                f"the next wait of {upcoming:.0f} s would pass max_retry_time={policy.max_retry_time:g} s"
            )
            return True
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures.

    :param max_attempts: Attempts that may fail for other reasons than rate limiting (network errors,
        timeouts, 408, 425, 5xx without ``Retry-After``), the first included (at least 1). Rate-limit
        answers (429, or any with ``Retry-After``) are bounded by ``max_retry_time`` only.
    :param max_retry_wait: Longest wait between two attempts, in seconds; also caps ``Retry-After``.
    :param max_retry_time: Most seconds one request may take, its retries and waits included; a wait
        that would end past it is not started.
    :param initial_wait: Base of the exponential backoff: the n-th wait is uniform in
        ``[0, min(max_retry_wait, initial_wait * 2 ** (n - 1))]`` ("full jitter").
    :param sleep: How to wait in the synchronous path; tests pass a recorder so they run instantly.
    :param async_sleep: How to wait in the asynchronous path.
    :param clock: Current Unix time, to turn a ``Retry-After`` date into seconds.
    :param monotonic: The clock of ``max_retry_time``; tests pass one that the recorded sleeps advance.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    max_retry_time: float = DEFAULT_MAX_RETRY_TIME
    initial_wait: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        check_retry_settings(self.max_attempts, self.max_retry_wait, self.max_retry_time)
        if self.initial_wait < 0:
            raise ValueError(f"initial_wait must not be negative; got {self.initial_wait!r}.")

    def wait_for(self, attempt: int, failure: BaseException | None) -> float:
        """Return the seconds to wait after the ``attempt``-th failure of its kind (1-based).

        :param attempt: How many failures like this one (counted, or rate-limited) the request had.
        :param failure: What made it fail.
        """
        if isinstance(failure, TransientFailure) and failure.retry_after is not None:
            return min(failure.retry_after, self.max_retry_wait)
        # The exponent is capped: a long storm of answers without Retry-After must not overflow a float.
        ceiling = min(self.max_retry_wait, self.initial_wait * 2 ** min(attempt - 1, 32))
        return random.uniform(0, ceiling)

    def _retry_kwargs(self, what: str, log: WarningLogger, budget: _Budget) -> dict[str, object]:
        def wait(state: RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            # The backoff grows with the failures of the same kind: a run of 429s must not make the
            # first 503 after it wait as long as a tenth 503 would.
            return self.wait_for(budget.record(failure), failure)

        def before_sleep(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            wait_s = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s failed with %s (attempt %d; %d of %d counted, %.0f of %g s used); retrying in %.1f s.",
                what,
                getattr(failure, "description", failure),
                state.attempt_number,
                budget.counted,
                self.max_attempts,
                budget.elapsed(),
                self.max_retry_time,
                wait_s,
            )

        return {
            "stop": budget.stop,
            "wait": wait,
            "retry": retry_if_exception_type(TransientFailure),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def _give_up(self, what: str, failure: TransientFailure, budget: _Budget) -> KlarTransientError:
        said = f" Klar said: {failure.said}" if failure.said else ""
        return KlarTransientError(
            f"{what} failed with {failure.description} after {budget.counted + budget.rate_limited} "
            f"attempt(s) in {budget.elapsed():.0f} s ({budget.rate_limited} of them rate-limited); "
            f"{budget.exhausted or 'no attempt left'}. Klar may be down or limiting the rate: try again "
            f"later, or {RETRY_SETTINGS_HINT}.{said}",
            http_status=failure.status,
        )

    def call(self, attempt: Callable[[], httpx.Response], *, what: str, log: WarningLogger) -> httpx.Response:
        """Run ``attempt`` until it returns a final answer or the budget is used up.

        :param attempt: Sends the request once; raises :class:`TransientFailure` to ask for a retry.
        :param what: The request for messages, e.g. ``POST /07.2025/orders/json``.
        :param log: Where each retry is logged, at warning level.
        :raises KlarTransientError: When the attempts or the time ran out.
        """
        budget = _Budget(self)
        retrying = Retrying(sleep=self.sleep, **self._retry_kwargs(what, log, budget))  # type: ignore[arg-type]
        try:
            return retrying(attempt)
        except TransientFailure as failure:
            raise self._give_up(what, failure, budget) from None

    async def acall(
        self, attempt: Callable[[], Awaitable[httpx.Response]], *, what: str, log: WarningLogger
    ) -> httpx.Response:
        """Asynchronous :meth:`call`, waiting with :attr:`async_sleep`.

        :param attempt: Sends the request once; raises :class:`TransientFailure` to ask for a retry.
        :param what: The request for messages.
        :param log: Where each retry is logged, at warning level.
        :raises KlarTransientError: When the attempts or the time ran out.
        """
        budget = _Budget(self)
        retrying = AsyncRetrying(sleep=self.async_sleep, **self._retry_kwargs(what, log, budget))  # type: ignore[arg-type]
        try:
            return await retrying(attempt)
        except TransientFailure as failure:
            raise self._give_up(what, failure, budget) from None


def check_retry_settings(max_attempts: Any, max_retry_wait: Any, max_retry_time: Any) -> None:
    """Check the three retry settings as the hook, operator and sensor accept them.

    :param max_attempts: A whole number, at least 1.
    :param max_retry_wait: Seconds, not negative.
    :param max_retry_time: Seconds, positive.
    :raises ValueError: Naming the setting and the value.
    """
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be a whole number of at least 1; got {max_attempts!r}.")
    checks = (("max_retry_wait", max_retry_wait, True), ("max_retry_time", max_retry_time, False))
    for name, value, zero_ok in checks:
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        if not math.isfinite(number) or number < 0 or (number == 0 and not zero_ok):
            kind = "a number of seconds, not negative" if zero_ok else "a positive number of seconds"
            raise ValueError(f"{name} must be {kind}; got {value!r}.")
