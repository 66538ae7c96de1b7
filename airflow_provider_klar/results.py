"""Plain result types shared by every layer: field errors, per-record outcomes, batch results, status.

This module imports nothing from HTTP, Airflow or the models, so any layer may use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any


class OutcomeState(str, Enum):
    """What happened to one record of a batch."""

    #: Stored by ``/json``, or found valid by ``/validate``.
    ACCEPTED = "accepted"
    #: Refused because of the record itself; sending it again unchanged fails again.
    REJECTED = "rejected"
    #: Not stored because Klar refused the whole batch for other records' errors; safe to send again.
    NOT_STORED = "not_stored"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a record is invalid.

    :param path: Dotted camelCase path inside the record, with list indexes
        (``lineItems.0.taxes.0.taxRate``); empty when the reason concerns the whole record.
    :param message: What is wrong, and where possible how to fix it.
    :param value: The offending value, when known.
    """

    path: str
    message: str
    value: Any = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"path": self.path, "message": self.message, "value": self.value}


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """The outcome of one record of a batch.

    :param index: Position of the record in the batch sent (0-based).
    :param id: The record's id (``orderId`` for the cost resources), when it has one.
    :param state: Accepted, rejected, or not stored because of other records.
    :param errors: Why it was rejected; empty when accepted.
    """

    index: int
    id: str | None
    state: OutcomeState
    errors: tuple[FieldError, ...] = ()

    @property
    def accepted(self) -> bool:
        """Whether Klar stored (or, in validate mode, accepted) the record."""
        return self.state is OutcomeState.ACCEPTED


@dataclass(frozen=True)
class KlarBatchResult:
    """What Klar said about one batch, record by record.

    :param resource: The Klar resource, e.g. ``orders``.
    :param api_version: The API version the batch was sent to.
    :param mode: ``upload`` (``/json``) or ``validate``.
    :param status_code: The HTTP status of Klar's final answer.
    :param outcomes: One outcome per record sent, in the order sent.
    """

    resource: str
    api_version: str
    mode: str
    status_code: int
    outcomes: tuple[RecordOutcome, ...] = field(default_factory=tuple)

    @property
    def accepted(self) -> list[RecordOutcome]:
        """The records Klar stored or found valid."""
        return [o for o in self.outcomes if o.state is OutcomeState.ACCEPTED]

    @property
    def rejected(self) -> list[RecordOutcome]:
        """The records Klar refused for their own errors."""
        return [o for o in self.outcomes if o.state is OutcomeState.REJECTED]

    @property
    def not_stored(self) -> list[RecordOutcome]:
        """The records that were not stored only because other records of the batch were invalid."""
        return [o for o in self.outcomes if o.state is OutcomeState.NOT_STORED]

    @property
    def accepted_count(self) -> int:
        """How many records were accepted."""
        return sum(1 for o in self.outcomes if o.state is OutcomeState.ACCEPTED)

    @property
    def rejected_ids(self) -> list[str | None]:
        """The ids of the rejected records."""
        return [o.id for o in self.rejected]


def _parse_count(value: Any) -> int:
    # Klar sends its counters as strings ("2"); tolerate ints, floats and missing values too.
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError(f"expected a count, got {value!r}")
    return int(float(value)) if isinstance(value, (str, float)) else int(value)


def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        # Python 3.10's fromisoformat does not take a trailing "Z".
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


@dataclass(frozen=True)
class KlarStatus:
    """Klar's status object for one resource of the data source behind the token.

    :param resource: The Klar resource the status is about.
    :param total: Objects submitted since 2023-03-14, all clients together.
    :param last_batch_count: Objects in the latest submission.
    :param last_success: When the latest successful submission arrived (aware), if any.
    :param last_failure: When the latest failed submission arrived (aware), if any.
    """

    resource: str
    total: int
    last_batch_count: int
    last_success: datetime | None
    last_failure: datetime | None

    @classmethod
    def from_api(cls, resource: str, payload: Mapping[str, Any]) -> KlarStatus:
        """Parse Klar's status JSON (counts as strings, ISO times, fields possibly missing or null).

        :param resource: The resource the payload belongs to.
        :param payload: The decoded JSON object.
        :raises ValueError: When a field is present but cannot be read as a count or a time.
        """
        return cls(
            resource=resource,
            total=_parse_count(payload.get("total")),
            last_batch_count=_parse_count(payload.get("lastBatchCount")),
            last_success=_parse_time(payload.get("lastSuccess")),
            last_failure=_parse_time(payload.get("lastFailure")),
        )

    @property
    def latest_failed(self) -> bool:
        """Whether the latest submission failed: a failure newer than the latest success."""
        if self.last_failure is None:
            return False
        return self.last_success is None or self.last_failure > self.last_success

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (times as ISO 8601 strings), e.g. for XCom."""
        return {
            "resource": self.resource,
            "total": self.total,
            "last_batch_count": self.last_batch_count,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "last_failure": self.last_failure.isoformat() if self.last_failure else None,
        }


def first_errors(outcomes: Iterable[RecordOutcome], limit: int = 10) -> list[str]:
    """Return up to ``limit`` readable lines ``record <index> (id <id>): <path>: <message>``."""
    lines: list[str] = []
    for outcome in outcomes:
        for error in outcome.errors or (FieldError("", "rejected"),):
            lines.append(f"record {outcome.index} (id {outcome.id}): {error}")
            if len(lines) >= limit:
                return lines
    return lines
