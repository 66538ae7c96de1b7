"""The account of an upload: accepted and rejected records, their first errors, aggregated warnings.

Everything here stays small whatever the upload size: counts, the first ``MAX_IDS`` rejected ids, the
first ``MAX_ERRORS`` error lines and one counter per distinct warning. The state round-trips through
JSON (:meth:`Tally.to_state` / :meth:`Tally.from_state`) so a checkpoint can carry it to the next try.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from airflow_provider_klar.results import FieldError

#: How many rejected ids the summary lists.
MAX_IDS = 100
#: How many error lines the tally keeps (the failure message shows the first ten).
MAX_ERRORS = 20
#: How many distinct warnings (fields or pitfalls) the tally counts; more are folded into "other".
MAX_WARNING_KEYS = 50

_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.|$)")


class RejectionOrigin(str, Enum):
    """Who rejected a record."""

    #: The local checks: the models, a malformed line, a record over the byte cap.
    LOCAL = "local"
    #: Klar, in a 400 answer or a 207 partial one.
    KLAR = "klar"


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected record and why.

    :param ordinal: Position of the record in the whole source stream (0-based).
    :param source: The file it came from, or ``records``.
    :param line: Its line number (JSON Lines, CSV) or item index (JSON arrays, ``records=``), if known.
    :param id: The record's id, when known.
    :param errors: Why it was rejected.
    :param origin: Who rejected it.
    :param record: The record as read (a dict, or the raw text of a malformed line), for the rejected file.
    """

    ordinal: int
    source: str
    line: int | None
    id: str | None
    errors: tuple[FieldError, ...]
    origin: RejectionOrigin
    record: Any = None

    @property
    def label(self) -> str:
        """Where the record came from, for people: ``line 12 of orders.jsonl`` or ``record 12``."""
        return where(self.ordinal, self.source, self.line)

    def lines(self) -> list[str]:
        """Readable lines, one per error: ``line 12 of orders.jsonl (id ORD-1): lineItems.0.sku: ...``."""
        who = f"{self.label} (id {self.id})" if self.id is not None else self.label
        return [f"{who}: {error}" for error in self.errors or (FieldError("", "rejected"),)]


def where(position: int, source: str, line: int | None) -> str:
    """Say where a record came from: ``record 12``, ``line 12 of /data/orders.jsonl``, ``item 3 of x.json``.

    :param position: The record's position in the whole source.
    :param source: The file it came from, or ``records``.
    :param line: Its line number or item index, if known.
    """
    if source == "records":
        return f"record {position}"
    if line is None:
        return f"record {position} of {source}"
    # JSON array files count items from 0; line-based formats count lines from 1; queries and Parquet
    # files rows from 1.
    lowered = source.lower().removesuffix(".gz")
    if source.startswith("query ") or lowered.endswith(".parquet"):
        unit = "row"
    else:
        unit = "item" if lowered.endswith(".json") else "line"
    return f"{unit} {line} of {source}"


# The same few paths come back in every record (an unknown field of each line item): remembered, a
# path costs a dict lookup instead of a regular expression's microsecond.
@functools.lru_cache(maxsize=4096)
def generic_path(path: str) -> str:
    """Replace list indexes in a dotted path by ``*`` so the same field of every line item counts once."""
    return _INDEX.sub("*", path)


@dataclass
class WarningTally:
    """Counts of unknown fields and pitfall warnings, one entry per distinct field path."""

    unknown_fields: Counter[str] = field(default_factory=Counter)
    pitfalls: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, record_id: str | None, warnings: Iterable[FieldError], unknown: Iterable[str]) -> None:
        """Count one record's warnings: each distinct path once per record.

        :param record_id: The record's id, quoted in the example of a new pitfall.
        :param warnings: The record's pitfall warnings.
        :param unknown: Dotted paths of the record's fields no model knows.
        """
        for path in {generic_path(p) for p in unknown}:
            self._count(self.unknown_fields, path)
        seen: set[str] = set()
        for warning in warnings:
            key = generic_path(warning.path) or "(record)"
            if key in seen:
                continue
            seen.add(key)
            key = self._count(self.pitfalls, key)
            if key not in self.examples:
                self.examples[key] = f"{record_id}: {warning.message}" if record_id else warning.message

    @staticmethod
    def _count(counter: Counter[str], key: str) -> str:
        if key not in counter and len(counter) >= MAX_WARNING_KEYS:
            key = "(other)"
        counter[key] += 1
        return key

    def merge(self, other: WarningTally) -> None:
        """Add another tally's counts to this one."""
        for key, count in other.unknown_fields.items():
            self.unknown_fields[key] += count
        for key, count in other.pitfalls.items():
            self.pitfalls[key] += count
        for key, example in other.examples.items():
            self.examples.setdefault(key, example)

    def messages(self) -> list[str]:
        """One readable message per kind of warning, or none when there is nothing to say."""
        out: list[str] = []
        if self.unknown_fields:
            fields = ", ".join(f"{k} ({v} records)" for k, v in _by_count(self.unknown_fields))
            out.append(
                f"Records carry fields the Klar models do not know: {fields}. Klar ignores or rejects "
                "unknown fields; check their spelling (JSON names are camelCase)."
            )
        if self.pitfalls:
            parts = []
            for key, count in _by_count(self.pitfalls):
                example = self.examples.get(key)
                parts.append(f"{key} ({count} records, e.g. {example})" if example else f"{key} ({count})")
            out.append(f"Records look like a known Klar pitfall: {'; '.join(parts)}.")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict, e.g. for the summary."""
        return {"unknown_fields": dict(self.unknown_fields), "pitfalls": dict(self.pitfalls)}

    def to_state(self) -> dict[str, Any]:
        """The whole tally as a JSON-ready dict, for checkpoints."""
        return {**self.to_dict(), "examples": dict(self.examples)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> WarningTally:
        """Rebuild a tally from :meth:`to_state`."""
        return cls(
            unknown_fields=Counter(state.get("unknown_fields") or {}),
            pitfalls=Counter(state.get("pitfalls") or {}),
            examples=dict(state.get("examples") or {}),
        )


@dataclass
class Tally:
    """Running counts of one upload, across every batch (and across tries, through checkpoints)."""

    records: int = 0
    accepted: int = 0
    rejected_local: int = 0
    rejected_klar: int = 0
    batches: int = 0
    resent_not_stored: int = 0
    #: Records replaced by a later version of the same key in their batch (never sent).
    superseded: int = 0
    rejected_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: WarningTally = field(default_factory=WarningTally)

    @property
    def rejected(self) -> int:
        """Records rejected, locally or by Klar."""
        return self.rejected_local + self.rejected_klar

    def add_rejection(self, rejection: Rejection) -> None:
        """Count one rejected record, keeping its id and error lines while there is room."""
        if rejection.origin is RejectionOrigin.LOCAL:
            self.rejected_local += 1
        else:
            self.rejected_klar += 1
        if rejection.id is not None and len(self.rejected_ids) < MAX_IDS:
            self.rejected_ids.append(rejection.id)
        if len(self.errors) < MAX_ERRORS:
            self.errors.extend(rejection.lines()[: MAX_ERRORS - len(self.errors)])

    def to_state(self) -> dict[str, Any]:
        """The whole tally as a JSON-ready dict, for checkpoints."""
        return {
            "records": self.records,
            "accepted": self.accepted,
            "rejected_local": self.rejected_local,
            "rejected_klar": self.rejected_klar,
            "batches": self.batches,
            "resent_not_stored": self.resent_not_stored,
            "superseded": self.superseded,
            "rejected_ids": list(self.rejected_ids),
            "errors": list(self.errors),
            "warnings": self.warnings.to_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Tally:
        """Rebuild a tally from :meth:`to_state`."""
        return cls(
            records=int(state.get("records", 0)),
            accepted=int(state.get("accepted", 0)),
            rejected_local=int(state.get("rejected_local", 0)),
            rejected_klar=int(state.get("rejected_klar", 0)),
            batches=int(state.get("batches", 0)),
            resent_not_stored=int(state.get("resent_not_stored", 0)),
            superseded=int(state.get("superseded", 0)),
            rejected_ids=[str(i) for i in state.get("rejected_ids") or []][:MAX_IDS],
            errors=[str(e) for e in state.get("errors") or []][:MAX_ERRORS],
            warnings=WarningTally.from_state(state.get("warnings") or {}),
        )


def _by_count(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def check_max_rejected(value: object) -> int | float:
    """Return ``max_rejected`` if it is a count (int >= 0) or a ratio (float in [0, 1)); raise otherwise.

    :param value: The operator's ``max_rejected`` argument.
    :raises ValueError: For anything else, saying what is allowed.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"max_rejected must be an int (a count) or a float below 1 (a ratio), got {value!r}."
        )
    if isinstance(value, float) and not 0.0 <= value < 1.0:
        raise ValueError(
            f"max_rejected={value!r}: a float is a ratio of the records and must be at least 0 and below 1; "
            "pass an int to allow a number of records."
        )
    if value < 0:
        raise ValueError(f"max_rejected must not be negative, got {value!r}.")
    return value


def exceeds_max_rejected(rejected: int, records: int, max_rejected: int | float) -> bool:
    """Whether ``rejected`` of ``records`` is more than ``max_rejected`` allows.

    :param rejected: Records rejected.
    :param records: Records read.
    :param max_rejected: A count (int) or a ratio of ``records`` (float below 1).
    """
    if isinstance(max_rejected, float):
        return records > 0 and rejected / records > max_rejected
    return rejected > max_rejected


def describe_limit(max_rejected: int | float) -> str:
    """Say in words what ``max_rejected`` allows."""
    if isinstance(max_rejected, float):
        return f"max_rejected={max_rejected} allows {max_rejected:.2%} of the records"
    return f"max_rejected={max_rejected} allows {max_rejected} record{'s' if max_rejected != 1 else ''}"
