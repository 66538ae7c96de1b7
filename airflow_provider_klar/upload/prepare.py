"""The per-record step of an upload: one source record in, JSON bytes to send (or why not) out.

This is the hot path of a large upload (it runs once per record, in the thread that reads the source),
so it is one small function with no per-record allocation beyond its result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_klar._jsonsafe import MAX_DEPTH, deepest_path
from airflow_provider_klar.results import FieldError
from airflow_provider_klar.upload._json import is_rejected_entry
from airflow_provider_klar.upload._record import Unparsed, parsed
from airflow_provider_klar.upload.accounting import where
from airflow_provider_klar.upload.transform import TRANSFORM_FAILED

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_ENCODE_ERRORS: tuple[type[Exception], ...] = (TypeError, ValueError)
_decode_object: Callable[[bytes], Any] | None
try:
    # msgspec (a dependency) encodes a realistic order about 6x faster than the json module. It writes
    # NaN as null, so it serves only validated records: the models refuse non-finite numbers. Unchecked
    # records keep the json module, which refuses NaN with a message.
    import msgspec

    _encode_valid: Callable[[Any], bytes] = msgspec.json.Encoder().encode
    _ENCODE_ERRORS = (TypeError, ValueError, msgspec.EncodeError)
    # It also parses a 3 KB order in about 60% of pydantic_core's time, and refuses what Klar could not
    # store (NaN, numbers beyond a double, half surrogate pairs): the check of a line sent unvalidated.
    _decode_object = msgspec.json.Decoder().decode
except ImportError:  # an environment that left msgspec out: slower, never wrong
    _decode_object = None

    def _encode_valid(record: Any) -> bytes:
        return _dumps(record).encode()


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

    def validate_json(self, data: bytes) -> ValidatedLike | None:
        """Optional: check the bytes of one JSON object in one pass (see ``RecordValidator``)."""
        ...


class SourceLike(Protocol):
    """What :class:`~airflow_provider_klar.upload.sources.SourceRecord` offers."""

    @property
    def position(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def line(self) -> int | None: ...
    @property
    def record(self) -> Any: ...
    @property
    def error(self) -> str | None: ...
    @property
    def raw(self) -> str | bytes | None: ...


# Not frozen, as SourceRecord: one is made per record, and nothing changes it after.
@dataclass(slots=True)
class PreparedRecord:
    """A record after the local checks.

    :param encoded: The record as compact JSON bytes, ready to send; ``None`` when it must not be sent.
    :param id: The record's id (``orderId`` for the cost resources), also for rejected records when known.
    :param errors: Why the record must not be sent; empty when it may.
    :param warnings: Pitfall warnings of the models (sent anyway unless ``strict``).
    :param unknown_fields: Dotted paths of fields no model knows.
    :param key: The record's upsert key when the resource's key is more than its id (``cogs``: the
        tuple ``(orderId, lineItemId, sku)``); ``None`` otherwise, the id being the key then.
    """

    encoded: bytes | None
    id: str | None
    errors: tuple[FieldError, ...] = ()
    warnings: tuple[FieldError, ...] = ()
    unknown_fields: tuple[str, ...] = ()
    key: tuple[str | None, ...] | None = None


def _id_of(record: Any, id_field: str) -> str | None:
    value = record.get(id_field) if isinstance(record, Mapping) else getattr(record, id_field, None)
    return None if value is None else str(value)


def key_of(record: Any, key_fields: tuple[str, ...]) -> tuple[str | None, ...] | None:
    """Return the upsert key of a record made of several fields, or ``None`` when it has no first field.

    Values are compared as text, as ids are; a missing field is part of the key as ``None`` (a ``cogs``
    row names ``lineItemId`` or ``sku``).

    :param record: The record (a mapping; anything else has no key).
    :param key_fields: The resource's key fields, the id field first.
    """
    if not isinstance(record, Mapping) or record.get(key_fields[0]) is None:
        return None
    return tuple(None if (value := record.get(name)) is None else str(value) for name in key_fields)


def _plain(record: Any) -> Any:
    # Models given in records= without local validation: dump them as Klar expects (camelCase, no nulls).
    dump = getattr(record, "model_dump", None)
    if dump is not None:
        return dump(mode="json", by_alias=True, exclude_none=True)
    return record


def prepare_record(
    src: SourceLike, validator: ValidatorLike | None, id_field: str, key_fields: tuple[str, ...] = ()
) -> PreparedRecord:
    """Check and encode one source record (see :func:`make_preparer`, which the engine uses per record).

    :param src: The record as read from the source.
    :param validator: The models' validator for the resource and version, or ``None`` to skip validation.
    :param id_field: The field naming the record (``id``, or ``orderId`` for the cost resources).
    :param key_fields: The resource's upsert key fields, when more than the id.
    """
    return make_preparer(validator, id_field, key_fields=key_fields)(src)


def make_preparer(
    validator: ValidatorLike | None,
    id_field: str,
    *,
    max_raw: int | None = None,
    key_fields: tuple[str, ...] = (),
) -> Callable[[SourceLike], PreparedRecord]:
    """Return the per-record step for one upload: a source record in, what to send (or why not) out.

    With a validator, the models decide; a valid record is sent as the validator returns it (the original
    dict when nothing needed changing). Without one, the record is only encoded. A malformed line, a
    record that is not a JSON object and a value JSON cannot carry (``NaN``, a ``datetime`` without
    validation) are rejected with a reason rather than raised; so is anything else that goes wrong with
    one record (a record nested too deep for the encoder, a mapping whose methods raise): nothing about
    one record can end the upload.

    A record read from a JSON Lines file carries its line's bytes (``raw``), an item of a JSON array
    file read lazily its item's bytes. When the validator hands back the very dict it was given, it
    vouches that the dict is already exactly what Klar gets (camelCase names only, JSON values only);
    the reader parsed that dict from those bytes, so the bytes are sent unchanged and the record is not
    encoded again.

    :param validator: The models' validator for the resource and version, or ``None`` to skip validation.
    :param id_field: The field naming the record (``id``, or ``orderId`` for the cost resources).
    :param max_raw: The longest line (in bytes) sent as read; a longer one is encoded compactly instead,
        so that whitespace in the file never decides whether a record fits a request.
    :param key_fields: The resource's upsert key fields (``KlarResource.key_fields``). When they are more
        than ``(id_field,)``, each record to send carries its key in :attr:`PreparedRecord.key`; otherwise
        its id is its key and nothing more is computed.
    """
    # Looked up once per upload, not once per record.
    validate = validator.validate if validator is not None else None
    encode_valid, encode_errors, prepared = _encode_valid, _ENCODE_ERRORS, PreparedRecord

    # Only resources keyed by more than the id pay for computing a key per record.
    multi_key = key_fields if len(key_fields) > 1 or (key_fields and key_fields[0] != id_field) else None
    id_pattern = re.compile(rf'"{re.escape(id_field)}"\s*:\s*"([^"\\]{{1,200}})"')
    one_pass = _one_pass(validator, id_field, multi_key)
    by_encoding = _by_encoding(validator, multi_key)

    def prepare(src: SourceLike) -> PreparedRecord:
        try:
            if type(src.record) is Unparsed:  # a JSON Lines line or a JSON array item read lazily
                line: bytes = src.raw.strip()  # type: ignore[union-attr,assignment]  # bytes when lazy
                if one_pass is not None and (max_raw is None or len(line) <= max_raw):
                    done = one_pass(line)
                    if done is not None:
                        return done
                # Not something the one pass vouches for: read it as an eager reader would.
                src = parsed(src)
            if src.error is not None:
                # The id of a line cut short can often still be read, so the rejected file can name it.
                raw_text = getattr(src, "raw", None)
                found = id_pattern.search(raw_text) if isinstance(raw_text, str) else None
                reason = src.error if TRANSFORM_FAILED in src.error else f"Malformed record: {src.error}"
                error = FieldError("", reason)
                return prepared(None, found.group(1) if found else None, (error,))
            if validate is not None:
                if (
                    by_encoding is not None
                    and type(src.record) is dict
                    and type(getattr(src, "raw", None)) is not bytes
                ):
                    vouched = by_encoding(src.record)
                    if vouched is not None:
                        return vouched
                checked = validate(src.record)
                out = checked.record
                if out is None or checked.errors:
                    errors = checked.errors or (FieldError("", "The models found the record invalid."),)
                    return prepared(None, checked.id, errors, checked.warnings, checked.unknown_fields)
                key = None if multi_key is None else key_of(out, multi_key)
                raw = getattr(src, "raw", None)
                if out is src.record and type(raw) is bytes:
                    line = raw.strip()
                    if max_raw is None or len(line) <= max_raw:
                        return prepared(line, checked.id, (), checked.warnings, checked.unknown_fields, key)
                try:
                    encoded = encode_valid(out)
                except encode_errors as err:
                    return prepared(None, checked.id, (FieldError("", f"Cannot be sent as JSON: {err}."),))
                return prepared(encoded, checked.id, (), checked.warnings, checked.unknown_fields, key)
            # Unchecked records are encoded from the dict even when the line's bytes are at hand: only the
            # encoder refuses numbers JSON cannot carry (1e400 reads as infinity), as Klar would.
            record = _plain(src.record)
            record_id = _id_of(record, id_field)
            if not isinstance(record, Mapping):
                message = f"A record must be a JSON object, got {type(record).__name__}."
                return prepared(None, record_id, (FieldError("", message),))
            key = None if multi_key is None else key_of(record, multi_key)
            try:
                return prepared(_dumps(record).encode(), record_id, key=key)
            except (TypeError, ValueError) as err:
                return prepared(None, record_id, (FieldError("", f"Cannot be sent as JSON: {err}."),))
        except Exception as err:  # one hostile record is rejected as itself; it never ends the upload
            return prepared(
                None, _safe_id(src.record, id_field), (FieldError("", _why_unsendable(src.record, err)),)
            )

    return prepare


def _by_encoding(
    validator: ValidatorLike | None, multi_key: tuple[str, ...] | None
) -> Callable[[dict[str, Any]], PreparedRecord | None] | None:
    """Return the step for a dict without bytes of its own (``records=``, SQL, CSV and Parquet rows).

    The validator's quick looks at a dict (``RecordValidator.validate_encoded``) give the bytes to send.
    The step returns ``None`` for a dict that they do not vouch for; the caller then takes the usual
    path, which decides and says what is wrong. ``None`` when the validator has no such check.
    """
    check: Callable[[dict[str, Any]], tuple[bytes, Any] | None] | None = getattr(
        validator, "validate_encoded", None
    )
    if check is None:
        return None
    prepared = PreparedRecord

    def by_encoding(record: dict[str, Any]) -> PreparedRecord | None:
        vouched = check(record)
        if vouched is None:
            return None
        data, (out, record_id, errors, warnings, unknown) = vouched
        if out is None or errors:  # a pitfall, to a strict validator
            return prepared(None, record_id, errors, warnings, unknown)
        key = None if multi_key is None else key_of(out, multi_key)
        return prepared(data, record_id, (), warnings, unknown, key)

    return by_encoding


def _one_pass(
    validator: ValidatorLike | None, id_field: str, multi_key: tuple[str, ...] | None
) -> Callable[[bytes], PreparedRecord | None] | None:
    """Return the step for a line (or array item) read unparsed: one pass over its bytes, sent as read.

    It returns ``None`` for a line it cannot vouch for (not a JSON object, an invalid record, a line of
    the provider's rejected file...); the caller then parses the line and takes the usual path, which
    says what is wrong. ``None`` when there is no such step (a validator of dicts only, without
    ``validate_json``; unvalidated records without msgspec).
    """
    prepared = PreparedRecord
    if validator is not None:
        # The tuple form of validate_json where the validator has it (RecordValidator): no result
        # object per record.
        fields = getattr(validator, "validate_json_fields", None)
        if fields is None:
            one: Callable[[bytes], ValidatedLike | None] | None = getattr(validator, "validate_json", None)
            if one is None:
                return None  # a validator of dicts only: every line is parsed first
            validate_one = one

            def fields(line: bytes) -> Any:
                result = validate_one(line)
                if result is None:
                    return None
                return (result.record, result.id, result.errors, result.warnings, result.unknown_fields)

        def checked(line: bytes) -> PreparedRecord | None:
            result = fields(line)
            if result is None:
                return None
            out, record_id, errors, warnings, unknown = result
            if is_rejected_entry(unknown):
                # A line of the provider's rejected file stands for its record: the reader unwraps it
                # (an array item of that layout is not unwrapped, but takes the usual path all the same).
                return None
            if out is None or errors:
                return prepared(None, record_id, errors, warnings, unknown)
            key = None if multi_key is None else key_of(out, multi_key)
            return prepared(line, record_id, (), warnings, unknown, key)

        return checked
    decode = _decode_object
    if decode is None:
        return None

    def unchecked(line: bytes) -> PreparedRecord | None:
        # A line the decoder takes is valid JSON without non-finite numbers: exactly what encoding the
        # parsed dict again would send, whitespace aside.
        if line.count(b"[") + line.count(b"{") >= MAX_DEPTH:
            return None  # maybe nested deeper than the reader takes (the decoder goes further)
        try:
            record = decode(line)
        except Exception:  # the usual path parses it again and says why
            return None
        if type(record) is not dict or is_rejected_entry(record):
            return None
        value = record.get(id_field)
        key = None if multi_key is None else key_of(record, multi_key)
        return prepared(line, None if value is None else str(value), key=key)

    return unchecked


def _safe_id(record: Any, id_field: str) -> str | None:
    try:
        return _id_of(record, id_field)
    except Exception:  # the record's own methods failed: it has no id to tell
        return None


def _why_unsendable(record: Any, err: Exception) -> str:
    """Say why checking or encoding one record raised ``err``, for its rejection."""
    try:
        where = deepest_path(record)
    except Exception:  # a mapping whose methods raise
        where = None
    if where is not None or isinstance(err, RecursionError):
        at = f" (at {where})" if where else ""
        return (
            f"The record is nested more than {MAX_DEPTH} levels deep{at}; no Klar object is nested more "
            f"than a few levels, so it cannot be checked or sent: leave the deep field out."
        )
    return f"The record cannot be checked or sent: {type(err).__name__}: {err}."


def describe(src: SourceLike) -> str:
    """Say where a record came from, for people: ``line 12 of /data/orders.jsonl`` or ``record 12``.

    :param src: The record as read from the source.
    """
    return where(src.position, src.source, src.line)
