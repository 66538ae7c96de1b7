"""Fault injection and switches: latency (with jitter), random 5xx, 429 with ``Retry-After``, a rate limit,
scripted failures, drops; and the switches that make the sandbox a harder Klar: the body envelope each
cost resource expects, a body size limit (413) and echoing the ``Authorization`` header in error texts.

Faults apply to Klar's routes only (never to ``/_sandbox/...`` or the docs), in this order: latency,
then the ``fail_next`` queue, then the rate limit, then ``drop_rate``, then ``fail_rate``. The switches
are read by the engine while it handles a request.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from airflow_provider_klar.sandbox.contract import CONTRACT, ENVELOPES, Envelope

#: The ``fail_next`` entry that closes the connection without answering (nothing is stored).
DROP = "drop"
#: The ``fail_next`` entry that handles the request (stores the batch), then closes the connection
#: instead of answering: the answer is lost on the way, so a client retries what Klar already has.
DROP_AFTER = "drop_after"

_KNOBS = (
    "latency_ms",
    "latency_jitter_ms",
    "fail_rate",
    "fail_codes",
    "drop_rate",
    "rate_limit",
    "retry_after",
    "fail_next",
    "seed",
    "envelope",
    "max_body_bytes",
    "echo_auth",
)

#: The resources whose envelope ``klar-api.md`` calls uncertain: the only ones ``envelope`` may switch.
SWITCHABLE = tuple(name for name, c in CONTRACT.items() if not c.envelope_certain)


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do instead of answering: an HTTP status (with ``Retry-After`` when set), or drop.

    :param reason: Which knob fired (``fail_next``, ``rate_limit``, ``fail_rate``, ``drop_rate``).
    :param status: The status to answer with; ``None`` to close the connection without answering.
    :param retry_after: Seconds for the ``Retry-After`` header, when one is sent.
    :param after: Drop only after handling the request normally (the answer is lost, not the request).
    """

    reason: str
    status: int | None = None
    retry_after: int | None = None
    after: bool = False

    @property
    def drop(self) -> bool:
        """Whether to close the connection without answering."""
        return self.status is None


def parse_rate(value: str | float | None) -> float | None:
    """Parse a rate limit: ``"10/s"``, ``"600/m"``, ``"10"`` or a number of requests per second.

    :param value: The rate; ``None``, ``0`` or ``""`` for no limit.
    :raises ValueError: When the text is not a rate.
    """
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        rate = float(value)
    else:
        number, _, unit = str(value).strip().partition("/")
        per = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}.get(unit.strip().lower())
        try:
            rate = float(number) / (per or math.nan)
        except ValueError:
            rate = math.nan
        if math.isnan(rate):
            raise ValueError(f"Rate limit {value!r} is not of the form N/s, N/m or N/h.")
    if rate < 0 or math.isnan(rate):
        raise ValueError(f"Rate limit {value!r} must be positive.")
    return rate or None


class FaultInjector:
    """Decides, request by request, whether to fail instead of answering. Thread-safe.

    :param latency_ms: Delay added to every Klar request (an async sleep: other requests go on).
    :param latency_jitter_ms: A random extra delay, uniform between 0 and this, per request: with it,
        requests sent together are answered out of order.
    :param fail_rate: Probability (0 to 1) of answering with one of ``fail_codes`` instead.
    :param fail_codes: The statuses ``fail_rate`` picks from (default 500 and 503).
    :param drop_rate: Probability (0 to 1) of closing the connection without answering.
    :param rate_limit: Requests per second allowed (token bucket, burst of one second's worth);
        beyond it 429 with ``Retry-After``. ``"10/s"``-style text is accepted.
    :param retry_after: Seconds sent in ``Retry-After`` with every 429 (rounded up to whole seconds,
        as HTTP requires; 0 is allowed and makes retrying tests fast).
    :param fail_next: What to do to the next requests, in order, one entry per Klar request: a status
        to answer with (``429`` gets ``Retry-After``), ``[status, seconds]`` for a status with that
        ``Retry-After`` (e.g. ``[503, 2]``), ``"drop"`` (or 0) to close the connection without
        handling the request, ``"drop_after"`` to handle it (store the batch) and then close the
        connection instead of answering.
    :param seed: Seed of the random generator behind ``fail_rate``, ``drop_rate`` and the jitter.
    :param envelope: The body shape the cost resources expect: ``"items"`` (``{"items": [...]}``) or
        ``"array"`` (a bare JSON array), for all of them, or a mapping per resource
        (``{"cogs": "array"}``; the others keep Klar's default). The other shape is refused with a
        whole-body 400 that names no record. ``None`` restores the defaults.
    :param max_body_bytes: Request bodies larger than this are answered 413 (as a proxy would), nothing
        stored; ``None`` or 0 for no limit.
    :param echo_auth: Repeat the request's ``Authorization`` header in every error text (messages of
        rejections, whole-body errors, injected faults as a proxy's plain-text page) and in an
        ``X-Echo-Authorization`` answer header, as careless APIs and proxies do: for testing that a
        client scrubs its token from what it shows.
    """

    def __init__(self, **knobs: Any) -> None:
        self._lock = threading.Lock()
        self.latency_ms: float = 0.0
        self.latency_jitter_ms: float = 0.0
        self.envelopes: dict[str, Envelope] = {}
        self.max_body_bytes: int | None = None
        self.echo_auth: bool = False
        self.fail_rate: float = 0.0
        self.fail_codes: tuple[int, ...] = (500, 503)
        self.drop_rate: float = 0.0
        self.rate_limit: float | None = None
        self.retry_after: float = 1.0
        self._queue: deque[int | str | list[int]] = deque()
        self._random = random.Random()
        self._tokens = 0.0
        self._refilled = time.monotonic()
        self.set(**knobs)

    def set(self, **knobs: Any) -> None:
        """Change some knobs; the others keep their values. ``fail_next`` replaces the queue.

        :param knobs: Any of the constructor's arguments.
        :raises TypeError: For an unknown knob.
        :raises ValueError: For a value out of range.
        """
        unknown = sorted(set(knobs) - set(_KNOBS))
        if unknown:
            raise TypeError(f"Unknown sandbox fault(s) {', '.join(unknown)}; use: {', '.join(_KNOBS)}.")
        with self._lock:
            for name in ("latency_ms", "latency_jitter_ms"):
                if knobs.get(name) is not None:
                    setattr(self, name, _non_negative(name, knobs[name]))
            if "envelope" in knobs:
                self.envelopes = _envelopes(knobs["envelope"])
            if "max_body_bytes" in knobs:
                limit = int(_non_negative("max_body_bytes", knobs["max_body_bytes"] or 0))
                self.max_body_bytes = limit or None
            if knobs.get("echo_auth") is not None:
                self.echo_auth = _boolean("echo_auth", knobs["echo_auth"])
            for name in ("fail_rate", "drop_rate"):
                if knobs.get(name) is not None:
                    setattr(self, name, _probability(name, knobs[name]))
            if knobs.get("fail_codes") is not None:
                self.fail_codes = tuple(_status(code) for code in knobs["fail_codes"]) or (500, 503)
            if "rate_limit" in knobs:
                self.rate_limit = parse_rate(knobs["rate_limit"])
                self._tokens = max(1.0, self.rate_limit or 0.0)  # a full bucket: burst of one second
                self._refilled = time.monotonic()
            if knobs.get("retry_after") is not None:
                self.retry_after = _non_negative("retry_after", knobs["retry_after"])
            if "fail_next" in knobs:
                self._queue = deque(_queue_entry(e) for e in knobs["fail_next"] or ())
            if knobs.get("seed") is not None:
                self._random.seed(knobs["seed"])

    def reset(self) -> None:
        """Turn every fault off."""
        self.set(latency_ms=0, latency_jitter_ms=0, fail_rate=0, fail_codes=(500, 503), drop_rate=0)
        self.set(rate_limit=None, retry_after=1, fail_next=[], envelope=None, max_body_bytes=None)
        self.set(echo_auth=False)

    def snapshot(self) -> dict[str, Any]:
        """Return the current knobs as a JSON-ready dict."""
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "latency_jitter_ms": self.latency_jitter_ms,
                "fail_rate": self.fail_rate,
                "fail_codes": list(self.fail_codes),
                "drop_rate": self.drop_rate,
                "rate_limit": self.rate_limit,
                "retry_after": self.retry_after,
                "fail_next": list(self._queue),
                "envelope": {name: self.envelope(name) for name in SWITCHABLE},
                "max_body_bytes": self.max_body_bytes,
                "echo_auth": self.echo_auth,
            }

    def envelope(self, resource: str) -> Envelope:
        """Return the body shape ``resource`` expects now (the switch, else Klar's default)."""
        return self.envelopes.get(resource) or CONTRACT[resource].envelope

    def delay(self) -> float:
        """Return the seconds to hold the current request: ``latency_ms`` plus a random jitter."""
        with self._lock:
            jitter = self._random.uniform(0, self.latency_jitter_ms) if self.latency_jitter_ms else 0.0
            return (self.latency_ms + jitter) / 1000

    def decide(self) -> Fault | None:
        """Return the fault to inject into the current request, or ``None`` to answer normally."""
        with self._lock:
            if self._queue:
                entry = self._queue.popleft()
                if entry == DROP:
                    return Fault("fail_next")
                if entry == DROP_AFTER:
                    return Fault("fail_next", after=True)
                if isinstance(entry, list):
                    return Fault("fail_next", entry[0], entry[1])
                status = int(entry)
                return Fault("fail_next", status, self._retry_after() if status == 429 else None)
            if self.rate_limit:
                now = time.monotonic()
                capacity = max(1.0, self.rate_limit)
                self._tokens = min(capacity, self._tokens + (now - self._refilled) * self.rate_limit)
                self._refilled = now
                if self._tokens < 1.0:
                    wait = (1.0 - self._tokens) / self.rate_limit
                    return Fault("rate_limit", 429, max(1, math.ceil(wait)))
                self._tokens -= 1.0
            if self.drop_rate and self._random.random() < self.drop_rate:
                return Fault("drop_rate")
            if self.fail_rate and self._random.random() < self.fail_rate:
                status = self._random.choice(self.fail_codes)
                return Fault("fail_rate", status, self._retry_after() if status == 429 else None)
        return None

    def _retry_after(self) -> int:
        return math.ceil(self.retry_after)


def _non_negative(name: str, value: Any) -> float:
    number = float(value)
    if number < 0 or math.isnan(number):
        raise ValueError(f"Sandbox fault {name} must be 0 or more, got {value!r}.")
    return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off", ""}:
        return False
    raise ValueError(f"Sandbox switch {name} must be true or false, got {value!r}.")


def _envelope(resource: str, value: Any) -> Envelope:
    if value not in ENVELOPES:
        raise ValueError(f"Sandbox envelope {value!r} for {resource} is not one of: {', '.join(ENVELOPES)}.")
    return value  # type: ignore[no-any-return]


def _envelopes(value: Any) -> dict[str, Envelope]:
    """Parse the ``envelope`` switch: one shape for every switchable resource, or a mapping."""
    if value is None or value == {}:
        return {}
    if isinstance(value, str):
        return {name: _envelope(name, value) for name in SWITCHABLE}
    if not isinstance(value, dict):
        raise ValueError(f"Sandbox envelope must be 'array', 'items' or a mapping, got {value!r}.")
    out: dict[str, Envelope] = {}
    for name, shape in value.items():
        if name not in SWITCHABLE:
            raise ValueError(
                f"Sandbox envelope cannot be switched for {name!r}: Klar's shape is certain there; "
                f"switchable: {', '.join(SWITCHABLE)}."
            )
        out[name] = _envelope(name, shape)
    return out


def _probability(name: str, value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"Sandbox fault {name} must be between 0 and 1, got {value!r}.")
    return number


def _status(value: Any) -> int:
    status = int(value)
    if not 100 <= status <= 599:
        raise ValueError(f"Sandbox fault status {value!r} is not an HTTP status code.")
    return status


def _queue_entry(value: Any) -> int | str | list[int]:
    if value in (DROP, 0, "0"):
        return DROP
    if value == DROP_AFTER:
        return DROP_AFTER
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return [_status(value[0]), math.ceil(_non_negative("retry_after", value[1]))]
    return _status(value)
