"""What an upload tells people: the XCom summary, the final log line, the rejected file's lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from airflow_provider_klar.upload.accounting import Rejection
from airflow_provider_klar.upload.engine import EngineResult, EngineSettings
from airflow_provider_klar.upload.ranges import PositionRanges


def build_summary(
    result: EngineResult, settings: EngineSettings, *, rejected_path: str | None
) -> dict[str, Any]:
    """Return the JSON-ready summary of an upload; small whatever the upload size.

    :param result: What the engine did.
    :param settings: What it was asked to do.
    :param rejected_path: Where rejected records were written, if anywhere.
    """
    tally = result.tally
    return {
        "resource": settings.resource,
        "api_version": settings.api_version,
        "mode": settings.mode.value,
        "records": tally.records,
        "batches": tally.batches,
        "accepted": tally.accepted,
        "rejected": tally.rejected,
        "rejected_locally": tally.rejected_local,
        "rejected_by_klar": tally.rejected_klar,
        "rejected_ids": list(tally.rejected_ids),
        "rejected_path": rejected_path,
        "started_at": result.started_at.isoformat(),
        "finished_at": result.finished_at.isoformat(),
        "duration_s": round(result.seconds, 3),
        "resumed_records": result.resumed_records,
        "skipped_batches": result.skipped_batches,
        "resent_not_stored": tally.resent_not_stored,
        "superseded": tally.superseded,
        "held_back_batches": result.held_back,
        "complete": result.complete,
        "unread": None if result.unread is None else result.unread.to_dict(),
        "warnings": tally.warnings.to_dict(),
    }


def summary_line(summary: dict[str, Any]) -> str:
    """Return the one-line account of an upload for the task log.

    :param summary: As :func:`build_summary` returns it.
    """
    verb = "Validated" if summary["mode"] == "validate" else "Uploaded"
    seconds = max(float(summary["duration_s"]), 1e-9)
    line = (
        f"{verb} {summary['records']:,} {summary['resource']} records (API {summary['api_version']}) in "
        f"{summary['duration_s']:.1f} s: {summary['accepted']:,} accepted, {summary['rejected']:,} rejected "
        f"({summary['rejected_locally']:,} locally, {summary['rejected_by_klar']:,} by Klar), "
        f"{summary['batches']:,} batches, {summary['records'] / seconds:,.0f} records/s."
    )
    if summary["resumed_records"]:
        line += (
            f" Resumed: {summary['resumed_records']:,} records in {summary['skipped_batches']:,} batches "
            "were confirmed by an earlier try and not sent again."
        )
    if summary["superseded"]:
        line += (
            f" {summary['superseded']:,} records were superseded by a later version of the same record "
            "in their batch and not sent."
        )
    if summary["resent_not_stored"]:
        line += (
            f" {summary['resent_not_stored']:,} records Klar had not stored (their batch held invalid "
            "records) were sent again."
        )
    if summary["unread"]:
        unread = summary["unread"]
        line += (
            f" INCOMPLETE: reading {unread['source']} stopped after {unread['after']:,} records; the rest "
            "was not read."
        )
    return line


def rejected_sink(writer: Any) -> Callable[[Rejection], None]:
    """Adapt a :class:`~airflow_provider_klar.upload.rejected.RejectedWriter` to the engine's callback.

    :param writer: An open rejected-records writer.
    """

    def write(rejection: Rejection) -> None:
        record: Any = rejection.record
        if isinstance(record, bytes):
            # Records rejected by Klar are kept only as the bytes sent, which are valid JSON.
            record = json.loads(record)
        # The writer's documented layout, plus where (for people) and who rejected the record.
        writer.write(
            {
                "position": rejection.ordinal,
                "source": rejection.source,
                "line": rejection.line,
                "where": rejection.label,
                "id": rejection.id,
                "rejected_by": rejection.origin.value,
                "errors": [error.to_dict() for error in rejection.errors],
                "record": record,
            }
        )

    return write


def carry_over_rejections(path: Any, conn_id: str | None, confirmed: PositionRanges, writer: Any) -> int:
    """Copy the earlier try's rejected records of confirmed positions into a resumed try's file.

    A resumed try skips the positions an earlier try finished with, so it would not find their rejected
    records again; the rejected file is replaced by each try, so they are copied over first. Lines of
    positions the earlier try had not confirmed are left out: this try reads those records again.

    :param path: The rejected file (as given to the operator).
    :param conn_id: The object storage connection, if any.
    :param confirmed: The positions earlier tries finished with.
    :param writer: The new try's rejected-records writer (not yet written to).
    :return: How many rejected records were copied.
    """
    from airflow_provider_klar.upload.sources import to_storage_path

    try:
        old = to_storage_path(path, conn_id).read_bytes()
    except FileNotFoundError:
        return 0
    copied = 0
    for text in old.splitlines():
        try:
            entry = json.loads(text)
        except ValueError:
            continue  # a line cut short when the earlier try died
        if not isinstance(entry, dict) or entry.get("position") not in confirmed:
            continue
        writer.write(entry)
        copied += 1
    return copied
