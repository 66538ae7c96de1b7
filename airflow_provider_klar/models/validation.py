"""The one way to choose a model for (resource, version), and the record validator the operator uses.

Speed: a valid record costs one pydantic-core validation, against a copy of the model's schema that
reports unknown keys as errors (so finding them needs no Python walk; see ``_checkers.py``), plus the
pitfall arithmetic for orders. Given the raw bytes of a JSON object, parsing and checking are one
pass, and most often a quicker one: a msgspec mirror of the models looks first (``_structs.py``). A
dict of plain JSON values takes a look of that mirror too, at its values or at its encoding
(:meth:`RecordValidator.validate_encoded`). The record sent is the caller's own dict (or bytes, or
an equal dict), since by construction it would dump back to itself. Only records that use snake_case
names, hold model instances or non-JSON values are validated again and dumped.
"""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticSerializationError, core_schema, from_json

from airflow_provider_klar._jsonsafe import MAX_DEPTH, deepest_path
from airflow_provider_klar.models._checkers import json_checker, python_checker
from airflow_provider_klar.models._messages import describe, field_errors, path_of
from airflow_provider_klar.models._structs import QuickLook, struct_checker
from airflow_provider_klar.models.costs import Cogs, LogisticsCosts, Refund, TransactionCosts
from airflow_provider_klar.models.orders import Order, Order_12_2022
from airflow_provider_klar.models.pitfalls import check_order
from airflow_provider_klar.resources import RESOURCES, get_resource
from airflow_provider_klar.results import FieldError

#: Every model by resource and the API version that introduced its shape.
MODELS: Mapping[str, Mapping[str, type[BaseModel]]] = {
    "orders": {"12.2022": Order_12_2022, "07.2025": Order},
    "refunds": {"12.2022": Refund},
    "cogs": {"12.2022": Cogs},
    "logistics-costs": {"04.2024": LogisticsCosts},
    "transaction-costs": {"06.2024": TransactionCosts},
}


def _version_key(version: str) -> tuple[int, int]:
    month, _, year = version.partition(".")
    if not (len(month) == 2 and month.isdigit() and len(year) == 4 and year.isdigit()):
        raise ValueError(f"Klar API version {version!r} is not of the form MM.YYYY (e.g. 07.2025).")
    if not 1 <= int(month) <= 12:
        raise ValueError(f"Klar API version {version!r} has no month {month}.")
    return int(year), int(month)


def model_for(resource: str, version: str) -> type[BaseModel]:
    """Return the model of ``resource`` records in API ``version``.

    A version this package does not know yet (Klar publishes new ones) gets the shape of the newest
    known version before it: ``orders`` in ``01.2026`` are validated as ``07.2025`` orders, and fields
    newer than this package pass through as unknown fields. A version older than every known one is
    an error, since the package cannot know what that version accepted.

    :param resource: A Klar resource name such as ``orders`` or ``logistics-costs``.
    :param version: An API version of the form ``MM.YYYY``.
    :raises ValueError: For an unknown resource, a malformed version, or a version older than the
        resource's first known version; the message lists the known versions.
    """
    row = get_resource(resource)
    wanted = _version_key(version)
    shapes = MODELS[row.name]
    older = [v for v in shapes if _version_key(v) <= wanted]
    if not older:
        raise ValueError(
            f"Klar API version {version} of {row.name} predates the versions this package knows "
            f"({', '.join(shapes)}); use one of those."
        )
    return shapes[max(older, key=_version_key)]


def json_schema(resource: str, version: str) -> dict[str, Any]:
    """Return the JSON Schema of one ``resource`` record in API ``version``, with camelCase names.

    :param resource: A Klar resource name.
    :param version: An API version of the form ``MM.YYYY``.
    :raises ValueError: As :func:`model_for`.
    """
    return model_for(resource, version).model_json_schema(by_alias=True, schema_generator=_KlarJsonSchema)


class _KlarJsonSchema(GenerateJsonSchema):
    """JSON Schema without the noise of Python defaults: no ``default: null``, no property titles.

    A field that may be left out reads as ``None`` in Python, but Klar has no default for it and
    rejects ``null`` for most fields, so the schema must not suggest one. Property titles derived from
    camelCase names ("Lineitemid") add nothing to the descriptions.
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        result = super().default_schema(schema)
        if schema.get("default", ...) is None:
            result.pop("default", None)
        return result

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


#: Records the quick look may refuse before it is judged: past these, it stops when it refuses most.
_QUICK_MISSES = 1000


@dataclass(slots=True)
class _Payoff:
    """The tries and misses of one use of the quick look (lines, or dicts by their encoding)."""

    tries: int = 0
    misses: int = 0

    def pays(self, vouched: bool) -> bool:
        """Count one try; return ``False`` once the look refuses most records (stop asking it then).

        :param vouched: Whether the look vouched for this record.
        """
        self.tries += 1
        if vouched:
            return True
        self.misses += 1
        return self.misses <= _QUICK_MISSES or self.misses * 2 <= self.tries


#: The fields of a :class:`ValidatedRecord`, in order: what :meth:`RecordValidator.validate_json_fields`
#: returns.
_Fields = tuple[
    "dict[str, Any] | None",
    "str | None",
    "tuple[FieldError, ...]",
    "tuple[FieldError, ...]",
    "tuple[str, ...]",
]


@dataclass(frozen=True, slots=True)
class ValidatedRecord:
    """The outcome of validating one record locally.

    :param record: The JSON-ready camelCase dict to send (unknown fields kept), or ``None`` if invalid.
    :param id: The record's id (``orderId`` for the cost resources), best effort, also when invalid.
    :param errors: Why the record is invalid; pitfalls too when the validator is strict.
    :param warnings: Pitfalls found in a valid record (each names the order id and the numbers).
    :param unknown_fields: Dotted paths of fields no model knows, e.g. ``("createdat", "lineItems.0.foo")``.
    """

    record: dict[str, Any] | None
    id: str | None
    errors: tuple[FieldError, ...] = ()
    warnings: tuple[FieldError, ...] = ()
    unknown_fields: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        """Whether the record may be sent."""
        return self.record is not None and not self.errors


@functools.cache
def _snake_names() -> Mapping[str, str]:
    """Return the JSON name of every snake_case attribute name (of every model) that differs from it."""
    names: dict[str, str] = {}
    seen: set[type[BaseModel]] = set()
    for shapes in MODELS.values():
        stack = list(shapes.values())
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            for name, info in current.model_fields.items():
                if info.alias and info.alias != name:
                    names[name] = info.alias
                stack.extend(_models_in(info.annotation))
    return MappingProxyType(names)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation] if annotation.__pydantic_complete__ else []
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _json_ready(value: Any) -> bool:
    # An explicit stack: an unknown field may be nested far deeper than Python's recursion limit.
    stack = [value]
    while stack:
        item = stack.pop()
        if item is None or isinstance(item, (str, bool, int)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            stack.extend(item.values())
        else:
            return False
    return True


def _too_deep(errors: list[ErrorDetails]) -> tuple[FieldError, ...]:
    """Errors for the unknown fields nested deeper than any record may be (see ``MAX_DEPTH``)."""
    found = []
    for error in errors:
        if error["type"] != "extra_forbidden":
            continue
        loc = error["loc"]
        # The unknown field sits len(loc) - 1 levels below the record, which is level 1.
        where = deepest_path(error["input"], MAX_DEPTH - len(loc))
        if where is None:
            continue
        path = path_of(loc)
        at = f"{path}.{where}" if where else path
        message = (
            f"nested more than {MAX_DEPTH} levels deep (at {at}); no Klar object is nested more than a few "
            f"levels, so this field cannot be checked or sent: leave it out"
        )
        found.append(FieldError(path, message))
    return tuple(found)


def _value_at(record: Any, path: str) -> Any:
    for part in path.split("."):
        record = record[int(part)] if isinstance(record, list) else record.get(part)
    return record


def _best_id(raw: Any, field: str) -> str | None:
    if type(raw) is dict and type(value := raw.get(field)) is str:
        return value  # the usual case, once per record: no isinstance against ABCs
    value = raw.get(field) if isinstance(raw, Mapping) else getattr(raw, field, None)
    if value is None and isinstance(raw, Mapping) and field != "id":
        value = raw.get("order_id")
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    return value if isinstance(value, str) else str(value)


class RecordValidator:
    """Validates records of one (resource, version); thread-safe; cheap to call per record.

    :param resource: A Klar resource name such as ``orders``.
    :param version: The API version the records are sent to (see :func:`model_for`).
    :param strict: Turn pitfall warnings into errors, so such records are not sent.
    """

    def __init__(self, resource: str, version: str, *, strict: bool = False) -> None:
        row = get_resource(resource)
        self.resource = row.name
        self.version = version
        self.strict = strict
        self.model = model_for(row.name, version)
        self._id_field = RESOURCES[row.name].id_field
        self._core = self.model.__pydantic_validator__
        self._checker = python_checker(self.model)
        self._json_checker = json_checker(self.model)
        # The quicker first look at JSON bytes, while it pays (see validate_json_fields).
        self._quick = struct_checker(self.model)
        self._lines = _Payoff()
        self._dicts: _Payoff | None = _Payoff()
        self._unknown_last = False
        self._dict_unknown_last = False
        self._snake = _snake_names()
        self._pitfalls = check_order if row.name == "orders" else None

    def __repr__(self) -> str:
        return f"RecordValidator({self.resource!r}, {self.version!r}, strict={self.strict})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its arguments (validation workers are started without fork and get it pickled);
        # the compiled validators it holds are rebuilt on the other side.
        return (_restore_validator, (self.resource, self.version, self.strict))

    def validate(self, record: Mapping[str, Any] | BaseModel) -> ValidatedRecord:
        """Validate one record and return what to send, or why not.

        A valid record is sent as the caller's own dict (not a copy): it is already exactly what the
        model would dump. Records with snake_case names, nested model instances or non-JSON values in
        unknown fields are dumped from the model instead.

        :param record: A dict with camelCase (or snake_case) names, or a model instance.
        """
        raw: dict[str, Any]
        if isinstance(record, BaseModel):
            raw = record.model_dump(mode="json", by_alias=True, exclude_unset=True)
        elif isinstance(record, dict):
            raw = record
        elif isinstance(record, Mapping):
            raw = dict(record)
        else:
            error = FieldError("", f"a record must be an object, got {describe(record)}", record)
            return ValidatedRecord(None, None, (error,))
        try:
            # One pydantic-core pass; names off, so a snake_case key is reported like an unknown one.
            self._checker.validate_python(raw)
        except ValidationError as exc:
            return self._slow(raw, exc.errors(include_url=False))
        return self._finish(raw, ())

    def validate_encoded(self, record: dict[str, Any]) -> tuple[bytes, _Fields] | None:
        """Validate a dict quickly; return the bytes to send and the result's fields, or ``None``.

        Two quick looks, each quicker than the dict checker of :meth:`validate`: a dict without unknown
        keys is checked where it is by the quick look's structs (:meth:`QuickLook.of_dict`), and sent as
        the dict they read, which equals the record; a dict with unknown keys is encoded, the bytes get
        the look :meth:`validate_json_fields` gives a line, and what that reads back must equal the
        dict. Encoding is lax (a tuple or set becomes an array, ``NaN`` becomes ``null``, a ``Decimal``
        or a ``datetime`` a string), but none of those reads back equal to what was encoded. ``None``
        when neither vouches for the record (a value that is not plain JSON, a snake_case name, an
        invalid record, no quick look for this model): call :meth:`validate`, which decides and says
        what is wrong. The fields are ``(record, id, errors, warnings, unknown_fields)``, the record
        being the dict that was encoded.

        :param record: A dict with camelCase names.
        """
        quick, payoff = self._quick, self._dicts
        if quick is None or payoff is None:
            return None
        if not self._dict_unknown_last:
            known = quick.of_dict(record)
            if known is not None:
                payoff.pays(True)
                return known[1], self._finish_fields(known[0], ())
        data = quick.encode(record)
        looked = None if data is None else self._look(quick, data)
        if data is None or looked is None or looked[0] != record:
            self._dict_unknown_last = False
            if not payoff.pays(False):
                self._dicts = None  # most dicts are refused (a Decimal in each, say): it only adds time now
            return None
        payoff.pays(True)
        # While the records carry unknown keys, the look at their encoding comes first.
        self._dict_unknown_last = bool(looked[1])
        return data, self._finish_fields(record, looked[1])

    def validate_json(self, data: bytes) -> ValidatedRecord | None:
        """Validate one record given as the bytes of a JSON object, parsing and checking in one pass.

        The result's ``record`` is the dict read, for its values (a whole number of a number field may
        read as a float): send the bytes themselves. Returns ``None`` unless the bytes are exactly what
        Klar gets: a JSON object that is valid, or
        valid but for unknown fields (reported) whose values are plain JSON. For anything else (bytes
        that are not one JSON object, an invalid record, snake_case names, a number JSON cannot carry)
        the caller parses the bytes itself and calls :meth:`validate`, which says what is wrong.
        A pitfall found in a valid record is a warning, or an error when the validator is strict.

        :param data: The bytes of one JSON object (one line of a JSON Lines file).
        """
        fields = self.validate_json_fields(data)
        return None if fields is None else ValidatedRecord(*fields)

    def validate_json_fields(self, data: bytes) -> _Fields | None:
        """Do what :meth:`validate_json` does; return the result's fields as a tuple, not a result.

        The upload calls this once per line: making a frozen result object would cost 5% of checking
        an order. The tuple is ``(record, id, errors, warnings, unknown_fields)``.

        :param data: The bytes of one JSON object.
        """
        quick = self._quick
        if quick is not None:
            looked = self._look(quick, data)
            if not self._lines.pays(looked is not None):
                # Most records are refused by the quick look (unknown fields in every record, say):
                # it only adds to the JSON checker's time now.
                self._quick = None
            if looked is not None:
                return self._finish_fields(*looked)
        try:
            record = self._json_checker.validate_json(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if not self._unknown_keys_only(errors) or _too_deep(errors):
                return None
            # Unknown fields only: the checker stopped short of building the dict, so parse it here.
            try:
                record = from_json(data, allow_inf_nan=False, cache_strings="keys")
            except ValueError:
                return None
            return self._finish_fields(record, tuple(path_of(e["loc"]) for e in errors))
        return self._finish_fields(record, ())

    def _look(self, quick: QuickLook, data: bytes) -> tuple[dict[str, Any], tuple[str, ...]] | None:
        """The quick look's record and unknown fields for the bytes of a JSON object, or ``None``."""
        if not self._unknown_last:
            found = quick(data)
            if found is not None:
                return found, ()
        # Valid but for unknown keys? (Tried first while the records carry them.) First with the
        # unknown keys met before, then with any.
        learned = quick.with_learned(data)
        if learned is not None:
            self._unknown_last = bool(learned[1])
            return learned
        both = quick.with_unknown(data)
        # A known field under its snake_case name is not vouched for: it is sent renamed.
        if both is not None and not any(path.rpartition(".")[2] in self._snake for path in both[1]):
            record, unknown, met = both
            quick.learn(met)
            self._unknown_last = bool(unknown)
            return record, unknown
        self._unknown_last = False
        return None

    def _unknown_keys_only(self, errors: list[ErrorDetails]) -> bool:
        """Whether the checker's only complaints are unknown keys holding plain JSON values.

        Such a record is valid as it is: its unknown fields are only reported. A snake_case name of a
        known field is not one of them (the record must be sent renamed), nor is a value JSON cannot
        carry.
        """
        return bool(errors) and all(
            e["type"] == "extra_forbidden" and e["loc"][-1] not in self._snake and _json_ready(e["input"])
            for e in errors
        )

    def _slow(self, raw: dict[str, Any], errors: list[ErrorDetails]) -> ValidatedRecord:
        """Handle a record with unknown keys, snake_case names, nested models or errors."""
        unknown = [path_of(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
        if unknown:
            deep = _too_deep(errors)
            if deep:
                return ValidatedRecord(None, _best_id(raw, self._id_field), deep)
        if self._unknown_keys_only(errors):
            return self._finish(raw, tuple(unknown))
        try:
            instance = self._core.validate_python(raw, by_alias=True, by_name=True)
        except ValidationError as exc:
            found = field_errors(exc.errors(include_url=False), self.version, self._snake)
            return ValidatedRecord(None, _best_id(raw, self._id_field), found)
        try:
            out = instance.model_dump(mode="json", by_alias=True, exclude_unset=True)
        except PydanticSerializationError as exc:
            # Only unknown fields can hold values the models do not know how to write as JSON.
            paths = [
                path_of(e["loc"])
                for e in errors
                if e["type"] == "extra_forbidden" and not _json_ready(e["input"])
            ]
            found = tuple(FieldError(p, f"cannot be sent as JSON: {exc}", _value_at(raw, p)) for p in paths)
            return ValidatedRecord(None, _best_id(raw, self._id_field), found or (FieldError("", str(exc)),))
        try:
            self._checker.validate_python(out)
        except ValidationError as exc:
            unknown = [
                path_of(e["loc"]) for e in exc.errors(include_url=False) if e["type"] == "extra_forbidden"
            ]
        else:
            unknown = []
        return self._finish(out, tuple(unknown))

    def _finish(self, out: dict[str, Any], unknown: tuple[str, ...]) -> ValidatedRecord:
        return ValidatedRecord(*self._finish_fields(out, unknown))

    def _finish_fields(self, out: dict[str, Any], unknown: tuple[str, ...]) -> _Fields:
        record_id = _best_id(out, self._id_field)
        warnings = self._pitfalls(out, record_id) if self._pitfalls is not None else None
        if not warnings:
            return (out, record_id, (), (), unknown)
        if self.strict:
            return (None, record_id, tuple(warnings), (), unknown)
        return (out, record_id, (), tuple(warnings), unknown)


def _restore_validator(resource: str, version: str, strict: bool) -> RecordValidator:
    return RecordValidator(resource, version, strict=strict)
