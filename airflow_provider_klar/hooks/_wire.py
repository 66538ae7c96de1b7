"""What a hook learns about Klar's wire during a run: which envelope a resource takes, how big a body may be.

Klar's help pages disagree about the body of the cost resources (a bare array or ``{"items": [...]}``)
and document no byte limit. Rather than fail an upload on either, the hook learns: a whole-body
refusal makes it try the other envelope once and keep the one that works; a 413 makes it split the
batch and keep later bodies under the size that failed. :class:`WireState` holds what was learned,
shared by every thread of one hook; the functions here build bodies, cut batches and merge results.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence

from airflow_provider_klar.hooks._limiter import InfoWarningLogger
from airflow_provider_klar.resources import KlarResource
from airflow_provider_klar.results import FieldError, KlarBatchResult, OutcomeState, RecordOutcome

#: How each envelope is named in messages.
SHAPES = {"array": "a bare JSON array", "items": 'an object {"items": [...]}'}


def other_envelope(envelope: str) -> str:
    """Return the envelope that is not ``envelope``.

    :param envelope: ``"array"`` or ``"items"``.
    """
    return "items" if envelope == "array" else "array"


def body(parts: Sequence[bytes], envelope: str) -> bytes:
    """Return the request body of the encoded records ``parts`` in ``envelope``.

    :param parts: One JSON document per record.
    :param envelope: ``"array"`` or ``"items"``.
    """
    if not parts:
        return b"[]" if envelope == "array" else b'{"items":[]}'
    # One copy of the whole body (a batch is megabytes): the brackets join the first and last records.
    head, tail = (b"[", b"]") if envelope == "array" else (b'{"items":[', b"]}")
    if len(parts) == 1:
        return head + parts[0] + tail
    return b",".join([head + parts[0], *parts[1:-1], parts[-1] + tail])


def body_size(parts: Sequence[bytes], envelope: str) -> int:
    """Return ``len(body(parts, envelope))`` without building the body.

    :param parts: One JSON document per record.
    :param envelope: ``"array"`` or ``"items"``.
    """
    overhead = 2 if envelope == "array" else len(b'{"items":[]}')
    return overhead + sum(len(p) for p in parts) + max(len(parts) - 1, 0)


def cut(parts: Sequence[bytes], envelope: str, cap: int | None) -> list[tuple[int, int]]:
    """Cut ``parts`` into consecutive ``(start, end)`` runs whose bodies stay within ``cap`` bytes.

    A record that alone passes the cap gets a run of its own (Klar decides about it). In source order.

    :param parts: One JSON document per record.
    :param envelope: ``"array"`` or ``"items"``.
    :param cap: The largest body to send, or ``None`` for no cap.
    """
    if cap is None or body_size(parts, envelope) <= cap:
        return [(0, len(parts))]
    runs: list[tuple[int, int]] = []
    start, size = 0, body_size((), envelope)
    for index, part in enumerate(parts):
        grown = size + len(part) + (1 if index > start else 0)
        if index > start and grown > cap:
            runs.append((start, index))
            start, grown = index, body_size((), envelope) + len(part)
        size = grown
    runs.append((start, len(parts)))
    return runs


def merge(results: Sequence[tuple[int, KlarBatchResult]], first: KlarBatchResult) -> KlarBatchResult:
    """Merge the results of consecutive runs of one batch into one result, outcomes re-indexed.

    :param results: ``(offset, result)`` per run, in order; the offset is the run's start in the batch.
    :param first: Any of the results, for the resource, version and mode.
    :return: One outcome per record of the batch, in order; the status is the highest of the runs'.
    """
    outcomes = tuple(
        dataclasses.replace(outcome, index=offset + outcome.index)
        for offset, result in results
        for outcome in result.outcomes
    )
    return KlarBatchResult(
        resource=first.resource,
        api_version=first.api_version,
        mode=first.mode,
        status_code=max(result.status_code for _, result in results),
        outcomes=outcomes,
    )


def too_large(
    row: KlarResource, *, version: str, mode: str, record_id: str | None, size: int, said: str
) -> KlarBatchResult:
    """The result of one record that Klar refused with 413 even alone: rejected, with the reason.

    :param row: The resource.
    :param version: The API version sent to.
    :param mode: ``upload`` or ``validate``.
    :param record_id: The record's id.
    :param size: The size of the refused body.
    :param said: What Klar said (scrubbed, shortened).
    """
    reason = FieldError(
        "",
        f"Klar refused this record alone as too large (HTTP 413, a {size:,}-byte request body). Klar "
        "documents no byte limit: make the record smaller (fewer line items, shorter texts) and send "
        f"it again. Klar said: {said}",
    )
    outcome = RecordOutcome(0, record_id, OutcomeState.REJECTED, (reason,))
    return KlarBatchResult(row.name, version, mode, 413, (outcome,))


class WireState:
    """The envelopes and the byte cap one hook has learned; thread-safe.

    :param pinned: ``extra.envelope`` of the connection: resource -> ``"array"`` or ``"items"``.
    :param log: Where a switched envelope and a lowered cap are reported (once each).
    """

    def __init__(self, pinned: Mapping[str, str], *, log: InfoWarningLogger) -> None:
        self._pinned = dict(pinned)
        self._log = log
        self._lock = threading.Lock()
        self._learned: dict[tuple[str, str], str] = {}
        self._confirmed: set[tuple[str, str]] = set()
        #: The largest body to send, learned from 413 answers; ``None`` while Klar refused none.
        self.byte_cap: int | None = None

    def envelope(self, row: KlarResource, mode: str) -> tuple[str, bool]:
        """Return the envelope to send and whether a whole-body refusal may switch it.

        :param row: The resource.
        :param mode: ``upload`` or ``validate``.
        """
        pinned = self._pinned.get(row.name)
        if pinned is not None:
            return pinned, False
        key = (row.name, mode)
        with self._lock:
            envelope = self._learned.get(key, row.envelope(mode))
            return envelope, row.envelope_fallback and key not in self._confirmed

    def confirm(self, row: KlarResource, mode: str, envelope: str, *, switched: bool, conn_id: str) -> None:
        """Record that Klar understood ``envelope``: it is used, without fallback, for the rest of the run.

        :param row: The resource.
        :param mode: ``upload`` or ``validate``.
        :param envelope: The envelope Klar understood.
        :param switched: Whether it is the fallback (then one warning says so and how to pin it).
        :param conn_id: The connection to pin it in, for the warning.
        """
        key = (row.name, mode)
        with self._lock:
            if key in self._confirmed:
                return
            self._confirmed.add(key)
            self._learned[key] = envelope
        if switched:
            self._log.warning(
                "Klar refused %s %s as %s and accepted %s: the hook sends %s for the rest of this run. To "
                'skip the refused first try, pin it in the extra of connection %r: "envelope": {"%s": "%s"}.',
                row.name,
                "batches" if mode == "upload" else "validations",
                SHAPES[other_envelope(envelope)],
                SHAPES[envelope],
                SHAPES[envelope],
                conn_id,
                row.name,
                envelope,
            )

    def lower_cap(self, refused_size: int, new_cap: int) -> int:
        """Keep later bodies at or under ``new_cap`` bytes after Klar refused ``refused_size`` with 413.

        :param refused_size: The size of the body Klar refused.
        :param new_cap: The size to keep to from now on (the larger half of the refused body).
        :return: The cap now in force (a lower one learned meanwhile stays).
        """
        with self._lock:
            if self.byte_cap is not None and self.byte_cap <= new_cap:
                return self.byte_cap
            self.byte_cap = new_cap
        self._log.warning(
            "Klar refused a %s-byte request as too large (HTTP 413): the batch is sent in halves, and "
            "every later request of this run is kept to at most %s bytes (split before sending).",
            f"{refused_size:,}",
            f"{new_cap:,}",
        )
        return new_cap
