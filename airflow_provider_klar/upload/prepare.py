"""The per-record step of an upload: one source record in, JSON bytes to send (or why not) out.

This is the hot path of a large upload (it runs once per record, in the thread that reads the source),
so it is one small function with no per-record allocation beyond its result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_klar.results import FieldError
from airflow_provider_klar.upload.accounting import where

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class ValidatedLike(Protocol):
    """What :class:`~airflow_provider_klar.models.ValidatedRecord` offers."""

    record: dict[str, Any] | None
    id: str | None
    errors: tuple[FieldError, ...]
    warnings: tuple[FieldError, ...]
    unknown_fields: tuple[str, ...]


class ValidatorLike(Protocol):
    """What :class:`~airflow_provider_klar.models.RecordValidator` offers."""

    def validate(self, record: Any) -> ValidatedLike: ...


class SourceLike(Protocol):
    """What :class:`~airflow_provider_klar.upload.sources.SourceRecord` offers."""

    position: int
    source: str
    line: int | None
    record: Any
    error: str | None


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A record after the local checks.

    :param encoded: The record as compact JSON bytes, ready to send; ``None`` when it must not be sent.
    :param id: The record's id (``orderId`` for the cost resources), also for rejected records when known.
    :param errors: Why the record must not be sent; empty when it may.
    :param warnings: Pitfall warnings of the models (sent anyway unless ``strict``).
    :param unknown_fields: Dotted paths of fields no model knows.
    """

    encoded: bytes | None
    id: str | None
    errors: tuple[FieldError, ...] = ()
    warnings: tuple[FieldError, ...] = ()
    unknown_fields: tuple[str, ...] = ()


def _id_of(record: Any, id_field: str) -> str | None:
    value = record.get(id_field) if isinstance(record, Mapping) else getattr(record, id_field, None)
    return None if value is None else str(value)


def _plain(record: Any) -> Any:
    # Models given in records= without local validation: dump them as Klar expects (camelCase, no nulls).
    dump = getattr(record, "model_dump", None)
    if dump is not None:
        return dump(mode="json", by_alias=True, exclude_none=True)
    return record


def prepare_record(src: SourceLike, validator: ValidatorLike | None, id_field: str) -> PreparedRecord:
    """Check and encode one source record.

    With a validator, the models decide; a valid record is sent as the validator returns it (the original
    dict when nothing needed changing). Without one, the record is only encoded. A malformed line, a
    record that is not a JSON object and a value JSON cannot carry (``NaN``, a ``datetime`` without
    validation) are rejected with a reason rather than raised.

    When the source hands over the record's original JSON text as ``raw`` bytes and the validator can
    read JSON directly (``validate_json``), the bytes are validated and, when valid, sent unchanged.

    :param src: The record as read from the source.
    :param validator: The models' validator for the resource and version, or ``None`` to skip validation.
    :param id_field: The field naming the record (``id``, or ``orderId`` for the cost resources).
    """
    if src.error is not None:
        return PreparedRecord(None, None, (FieldError("", f"Malformed record: {src.error}"),))
    raw = getattr(src, "raw", None)
    if validator is not None:
        validate_json = getattr(validator, "validate_json", None)
        if isinstance(raw, bytes) and validate_json is not None:
            checked: ValidatedLike = validate_json(raw)
            if checked.record is not None and not checked.errors:
                return PreparedRecord(raw.strip(), checked.id, (), checked.warnings, checked.unknown_fields)
        else:
            checked = validator.validate(src.record)
        if checked.record is None or checked.errors:
            errors = checked.errors or (FieldError("", "The models found the record invalid."),)
            return PreparedRecord(None, checked.id, errors, checked.warnings, checked.unknown_fields)
        record: Any = checked.record
        record_id = checked.id
        warnings, unknown = checked.warnings, checked.unknown_fields
    else:
        if isinstance(raw, bytes):
            return PreparedRecord(raw.strip(), _id_of(src.record, id_field))
        record = _plain(src.record)
        record_id = _id_of(record, id_field)
        if not isinstance(record, Mapping):
            message = f"A record must be a JSON object, got {type(record).__name__}."
            return PreparedRecord(None, record_id, (FieldError("", message),))
        warnings, unknown = (), ()
    try:
        encoded = _dumps(record).encode()
    except (TypeError, ValueError) as err:
        return PreparedRecord(None, record_id, (FieldError("", f"Cannot be sent as JSON: {err}."),))
    return PreparedRecord(encoded, record_id, (), warnings, unknown)


def describe(src: SourceLike) -> str:
    """Say where a record came from, for people: ``line 12 of /data/orders.jsonl`` or ``record 12``.

    :param src: The record as read from the source.
    """
    return where(src.position, src.source, src.line)
