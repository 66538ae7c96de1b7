"""KlarStatusTrigger: poll Klar's status object asynchronously until the submission is confirmed.

The decision "is the submission confirmed, has it failed, or must we keep waiting" lives here, in
:func:`check_status`, because the triggerer imports this module without the sensor; the sensor's
``poke`` calls the same function, so both modes always agree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_klar.exceptions import KlarConfigurationError, KlarTransientError
from airflow_provider_klar.hooks._retry import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_TIME,
    DEFAULT_MAX_RETRY_WAIT,
)
from airflow_provider_klar.results import KlarStatus

if TYPE_CHECKING:
    from airflow_provider_klar.hooks.klar import KlarHook

#: The longest pause between two polls after consecutive transient errors (unless poll_interval is longer).
MAX_BACKOFF_S = 300.0
#: How long a poll may run past the deadline (the hook's own retries) before it is abandoned.
DEADLINE_GRACE_S = 30.0


class StatusState(str, Enum):
    """What Klar's status object says about the submissions made since ``since``."""

    #: Nothing confirmed yet: keep waiting.
    WAITING = "waiting"
    #: A successful submission at or after ``since`` (and ``total >= min_total`` when given).
    DONE = "done"
    #: The latest submission at or after ``since`` failed, and ``fail_on_failure`` is set.
    FAILED = "failed"


@dataclass(frozen=True)
class StatusCheck:
    """The verdict of :func:`check_status`.

    :param state: Waiting, done or failed.
    :param reason: A whole sentence for the log or the error message, with the times involved.
    """

    state: StatusState
    reason: str


def _iso(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def to_utc(value: datetime | date | str) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive datetimes are taken as UTC.

    :param value: A datetime, a date (midnight UTC) or an ISO 8601 string (``Z`` or an offset allowed).
    :raises KlarConfigurationError: When a string is not an ISO 8601 date-time, or the type is wrong.
    """
    if isinstance(value, str):
        text = value.strip()
        # Python 3.10's fromisoformat does not take a trailing "Z".
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise KlarConfigurationError(
                f"since={value!r} is not an ISO 8601 date-time; use e.g. '2025-07-01T06:00:00Z', a "
                "datetime, or None for the start of the DAG run."
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        raise KlarConfigurationError(
            f"since must be a datetime, an ISO 8601 string or None, not {type(value).__name__} ({value!r})."
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def check_status(
    status: KlarStatus, *, since: datetime, min_total: int | None = None, fail_on_failure: bool = True
) -> StatusCheck:
    """Decide whether Klar confirmed a submission made at or after ``since``.

    - FAILED when ``fail_on_failure`` and ``last_failure >= since`` and the failure is newer than the
      latest success (or there is no success at all).
    - DONE when ``last_success >= since`` and, when ``min_total`` is given, ``total >= min_total``.
    - WAITING otherwise.

    :param status: Klar's status object for the resource.
    :param since: The earliest submission time that counts (aware).
    :param min_total: When given, also wait until Klar's ``total`` reaches it.
    :param fail_on_failure: Whether a failed latest submission ends the wait with FAILED.
    """
    success, failure = status.last_success, status.last_failure
    if fail_on_failure and failure is not None and failure >= since and status.latest_failed:
        return StatusCheck(
            StatusState.FAILED,
            f"Klar's latest {status.resource} submission failed at {_iso(failure)}; the latest "
            f"successful one was at {_iso(success)} (waiting for a success since {_iso(since)}). "
            "Check the uploading task, or the other system that sends this data, and upload again.",
        )
    if success is None or success < since:
        return StatusCheck(
            StatusState.WAITING,
            f"Klar's latest successful {status.resource} submission was at {_iso(success)}, "
            f"before {_iso(since)}.",
        )
    if min_total is not None and status.total < min_total:
        return StatusCheck(
            StatusState.WAITING,
            f"Klar counts {status.total} {status.resource} in total, fewer than min_total={min_total}.",
        )
    return StatusCheck(
        StatusState.DONE,
        f"Klar confirmed a successful {status.resource} submission at {_iso(success)} "
        f"(since {_iso(since)}; {status.last_batch_count} objects in the latest batch, "
        f"{status.total} in total).",
    )


def _to_timestamp(value: float | str | datetime) -> float:
    if isinstance(value, datetime):
        return to_utc(value).timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return to_utc(value).timestamp()
    return float(value)


class KlarStatusTrigger(BaseTrigger):
    """Poll ``GET /<resource>/status`` with the async hook until Klar confirms, refuses, or time runs out.

    Fires one event, a dict with ``status``:

    - ``"success"``: ``klar_status`` (:meth:`KlarStatus.to_dict`) and ``message``;
    - ``"failed"``: the latest submission after ``since`` failed; ``message`` gives both times;
    - ``"timeout"``: ``end_time`` passed; ``message``, and ``klar_status`` of the last answer (or None);
    - ``"error"``: a final error (401/403, 404, an unreadable answer); ``message`` and ``error_type``.

    Transient errors (network, 408, 425, 429, 5xx) are logged and retried, with the pause doubling
    after each consecutive one (capped at :data:`MAX_BACKOFF_S`), until ``end_time``. It only reads:
    an upload is never sent from the triggerer.

    :param resource: The Klar resource, e.g. ``orders``.
    :param since: ISO 8601 time (or datetime); only submissions at or after it count.
    :param end_time: The deadline, as a Unix timestamp or an ISO 8601 time.
    :param klar_conn_id: The Airflow connection to Klar.
    :param api_version: The API version for the hook (the status path has none; kept for symmetry).
    :param min_total: When given, also wait until Klar's ``total`` reaches it.
    :param fail_on_failure: Whether a failed latest submission ends the wait with a ``failed`` event.
    :param poll_interval: Seconds between two polls.
    :param max_attempts: The hook's attempts per poll that may fail for other reasons than rate limiting.
    :param max_retry_wait: The hook's longest wait between two attempts of a poll, in seconds.
    :param max_retry_time: Most seconds one poll may take, its retries and waits included.
    """

    def __init__(
        self,
        *,
        resource: str,
        since: str | datetime,
        end_time: float | str | datetime,
        klar_conn_id: str = "klar_default",
        api_version: str | None = None,
        min_total: int | None = None,
        fail_on_failure: bool = True,
        poll_interval: float = 60.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        max_retry_time: float = DEFAULT_MAX_RETRY_TIME,
    ) -> None:
        super().__init__()
        self.resource = resource
        self.since = _iso(to_utc(since))
        self.end_time = _to_timestamp(end_time)
        self.klar_conn_id = klar_conn_id
        self.api_version = api_version
        self.min_total = None if min_total is None else int(min_total)
        self.fail_on_failure = bool(fail_on_failure)
        self.poll_interval = max(float(poll_interval), 0.0)
        self.max_attempts = int(max_attempts)
        self.max_retry_wait = float(max_retry_wait)
        self.max_retry_time = float(max_retry_time)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the primitive keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "resource": self.resource,
                "since": self.since,
                "end_time": self.end_time,
                "klar_conn_id": self.klar_conn_id,
                "api_version": self.api_version,
                "min_total": self.min_total,
                "fail_on_failure": self.fail_on_failure,
                "poll_interval": self.poll_interval,
                "max_attempts": self.max_attempts,
                "max_retry_wait": self.max_retry_wait,
                "max_retry_time": self.max_retry_time,
            },
        )

    def _make_hook(self) -> KlarHook:
        from airflow_provider_klar.hooks.klar import KlarHook

        return KlarHook(
            klar_conn_id=self.klar_conn_id,
            api_version=self.api_version,
            max_attempts=self.max_attempts,
            max_retry_wait=self.max_retry_wait,
            max_retry_time=self.max_retry_time,
        )

    def _next_delay(self, consecutive_errors: int) -> float:
        if consecutive_errors == 0:
            return self.poll_interval
        return min(self.poll_interval * 2**consecutive_errors, max(MAX_BACKOFF_S, self.poll_interval))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until done, failed, deadline or a final error, and fire exactly one event."""
        # The event is computed before it is yielded so the hook is closed even when the caller
        # never resumes the generator after the first event.
        yield TriggerEvent(await self._poll())

    async def _poll(self) -> dict[str, Any]:
        since = to_utc(self.since)
        hook = self._make_hook()
        try:
            return await self._poll_with(hook, since)
        finally:
            hook.close()

    async def _poll_with(self, hook: KlarHook, since: datetime) -> dict[str, Any]:
        errors = 0
        last: KlarStatus | None = None
        polls = 0
        while True:
            polls += 1
            # The hook retries transient failures itself; near the deadline that must not hold the
            # trigger long past it.
            budget = max(self.end_time - time.time(), 0.0) + DEADLINE_GRACE_S
            try:
                last = await asyncio.wait_for(hook.aget_status(self.resource), timeout=budget)
            except (KlarTransientError, httpx.TransportError, asyncio.TimeoutError) as err:
                errors += 1
                self.log.warning(
                    "Klar's %s status is unavailable (%s: %s); %d transient error(s) in a row, "
                    "retrying in %.1f s.",
                    self.resource,
                    type(err).__name__,
                    err,
                    errors,
                    self._next_delay(errors),
                )
            except Exception as err:
                # Final: 401/403 (KlarAuthError), 404 (KlarNotFoundError), an unreadable answer, a bad
                # connection. Anything unexpected must still end with an event the sensor can explain.
                return _error_event(err)
            else:
                errors = 0
                check = check_status(
                    last, since=since, min_total=self.min_total, fail_on_failure=self.fail_on_failure
                )
                if check.state is StatusState.DONE:
                    self.log.info("%s", check.reason)
                    return {"status": "success", "message": check.reason, "klar_status": last.to_dict()}
                if check.state is StatusState.FAILED:
                    return {"status": "failed", "message": check.reason, "klar_status": last.to_dict()}
                self.log.info("Still waiting (poll %d): %s", polls, check.reason)
            remaining = self.end_time - time.time()
            if remaining <= 0:
                return {
                    "status": "timeout",
                    "message": (
                        f"Klar confirmed no {self.resource} submission made since {self.since} before "
                        f"the sensor's timeout ({_iso(datetime.fromtimestamp(self.end_time, timezone.utc))}"
                        f", {polls} polls)."
                    ),
                    "klar_status": last.to_dict() if last is not None else None,
                }
            # Never sleep past the deadline: the last poll happens at the deadline itself.
            await asyncio.sleep(min(self._next_delay(errors), remaining))


def _error_event(err: BaseException) -> dict[str, Any]:
    return {"status": "error", "error_type": type(err).__name__, "message": str(err) or repr(err)}
