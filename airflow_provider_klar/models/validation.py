"""The one way to choose a model for (resource, version), and the record validator the operator uses.

Speed: a valid record costs one pydantic-core validation plus a walk over its nested objects (not its
fields) to find unknown names; the record sent is the caller's own dict, since by construction it
would dump back to itself. Only records that use snake_case names, hold model instances or
non-JSON values in unknown fields are dumped again.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_provider_klar.models._messages import describe, field_errors
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
    return model_for(resource, version).model_json_schema(by_alias=True)


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


class _Walker:
    """Finds unknown fields in a validated raw record, nested object by nested object."""

    _cache: dict[type[BaseModel], _Walker] = {}

    def __init__(self, model: type[BaseModel]) -> None:
        self.aliases: frozenset[str] = frozenset(f.alias or n for n, f in model.model_fields.items())
        self.names: frozenset[str] = frozenset(n for n, f in model.model_fields.items() if f.alias != n)
        self.nested: list[tuple[str, _Walker, bool]] = []
        _Walker._cache[model] = self
        for name, info in model.model_fields.items():
            ann = info.annotation
            sub, is_list = _nested_model(ann)
            if sub is not None:
                walker = _Walker._cache.get(sub) or _Walker(sub)
                self.nested.append((info.alias or name, walker, is_list))

    @classmethod
    def of(cls, model: type[BaseModel]) -> _Walker:
        return cls._cache.get(model) or cls(model)

    def scan(self, raw: Mapping[str, Any], prefix: str, unknown: list[str]) -> bool:
        """Append unknown paths to ``unknown``; return whether the record must be dumped again."""
        redump = False
        if not self.aliases.issuperset(raw):
            for key in raw:
                if key in self.aliases:
                    continue
                if key in self.names:
                    redump = True
                else:
                    unknown.append(prefix + key)
                    redump = redump or not _json_ready(raw[key])
        for alias, walker, is_list in self.nested:
            child = raw.get(alias)
            if child is None:
                continue
            if is_list:
                for i, item in enumerate(child):
                    if type(item) is not dict:
                        redump = True
                    else:
                        redump = walker.scan(item, f"{prefix}{alias}.{i}.", unknown) or redump
            elif type(child) is not dict:
                redump = True
            else:
                redump = walker.scan(child, f"{prefix}{alias}.", unknown) or redump
        return redump


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """Return the model a field holds (directly, optionally, or as a list of them), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and args:
        sub, _ = _nested_model(args[0])
        return sub, True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in args:
            sub, is_list = _nested_model(arg)
            if sub is not None:
                return sub, is_list
    return None, False


def _json_ready(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_json_ready(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_ready(v) for k, v in value.items())
    return False


def _best_id(raw: Any, field: str) -> str | None:
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
        self._walker = _Walker.of(self.model)
        self._pitfalls = check_order if row.name == "orders" else None

    def __repr__(self) -> str:
        return f"RecordValidator({self.resource!r}, {self.version!r}, strict={self.strict})"

    def validate(self, record: Mapping[str, Any] | BaseModel) -> ValidatedRecord:
        """Validate one record and return what to send, or why not.

        :param record: A dict with camelCase (or snake_case) names, or a model instance.
        """
        if isinstance(record, BaseModel):
            record = record.model_dump(mode="json", by_alias=True, exclude_unset=True)
        elif not isinstance(record, Mapping):
            return ValidatedRecord(
                None, None, (FieldError("", f"a record must be an object, got {describe(record)}", record),)
            )
        elif type(record) is not dict:
            record = dict(record)
        record_id = _best_id(record, self._id_field)
        unknown: list[str] = []
        try:
            # Names off: a snake_case key then shows up as an unknown key, which the walk tells.
            self._core.validate_python(record, by_alias=True, by_name=False)
        except ValidationError:
            redump = True
        else:
            redump = self._walker.scan(record, "", unknown)
        out: dict[str, Any] = record
        if redump:
            try:
                instance = self._core.validate_python(record, by_alias=True, by_name=True)
            except ValidationError as exc:
                errors = field_errors(exc.errors(include_url=False), self.version)
                return ValidatedRecord(None, record_id, errors)
            out = instance.model_dump(mode="json", by_alias=True, exclude_unset=True)
            unknown = []
            self._walker.scan(out, "", unknown)
        warnings: tuple[FieldError, ...] = ()
        if self._pitfalls is not None:
            warnings = tuple(self._pitfalls(out, record_id))
        if warnings and self.strict:
            return ValidatedRecord(None, record_id, warnings, (), tuple(unknown))
        return ValidatedRecord(out, record_id, (), warnings, tuple(unknown))
