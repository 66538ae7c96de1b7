"""Compiled copies of the models' schemas that check a record without building a model instance.

The record validator's fast paths (see :mod:`~airflow_provider_klar.models.validation`) run one of these
per record. Both report unknown keys as ``extra_forbidden`` errors, so finding them needs no Python walk:

- :func:`python_checker` checks a dict already in memory (its output is not used);
- :func:`json_checker` parses and checks the raw bytes of one JSON object in the same Rust pass, and
  builds the plain dict of what it read (camelCase keys, JSON values), nothing more.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import SchemaValidator, core_schema

from airflow_provider_klar.models._base import PYTHON_ONLY

_CONFIG = core_schema.CoreConfig(
    strict=True, extra_fields_behavior="forbid", validate_by_name=False, validate_by_alias=True
)


@functools.cache
def python_checker(model: type[BaseModel]) -> SchemaValidator:
    """Return a validator of ``model`` for dicts that reports unknown keys as ``extra_forbidden`` errors.

    :param model: A Klar model.
    """
    # Plain dicts rather than model instances: nothing reads the output, and building instances costs
    # a fifth more. A model instance nested in the dict is refused (it is not a dict), so it is dumped.
    return SchemaValidator(_as_dicts(model.__pydantic_core_schema__, json=False), _CONFIG)


class _AsModel:
    """A checked record's dict, seen as the model instance a model-level after-validator expects.

    Attributes are read by their Python names; a field the record left out reads as ``None``, as on
    the model.
    """

    __slots__ = ("_names", "_record")

    def __init__(self, record: Mapping[str, Any], names: Mapping[str, str]) -> None:
        self._record = record
        self._names = names

    def __getattr__(self, name: str) -> Any:
        return self._record.get(self._names.get(name, name))


def _on_dicts(function: Callable[..., Any], model: type[BaseModel]) -> Callable[..., Any]:
    """Run a model's after-validator on the dict the JSON checker builds; return the dict."""
    names = {name: info.alias or name for name, info in model.model_fields.items()}

    def check(record: dict[str, Any], *info: Any) -> dict[str, Any]:
        function(_AsModel(record, names), *info)
        return record

    return check


def _as_dicts(node: Any, *, json: bool, one_number: bool = False) -> Any:
    """Return a copy of a core schema that validates into plain dicts keyed by the JSON names.

    Each model becomes a typed dict whose keys are the camelCase names (so snake_case names are unknown
    keys), fields with a default become optional keys without the default (a dict holds only what the
    record holds), and unknown keys are ``extra_forbidden``. A model's after-validators see the dict
    through :class:`_AsModel`. For Python input (``json=False``) a float field refuses a Decimal, which
    the model itself would take and make a float: such a record must be dumped, not sent as it is.
    With ``one_number``, a number field (an int or a float) is one float schema.
    """
    if isinstance(node, list):
        return [_as_dicts(n, json=json, one_number=one_number) for n in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if not json and (node.get("metadata") or {}).get(PYTHON_ONLY):
        return core_schema.chain_schema([core_schema.is_instance_schema(float), node])
    if kind == "function-after" and node["schema"].get("type") == "model":
        function = node["function"]
        wrapped = _on_dicts(function["function"], node["schema"]["cls"])
        inner = _as_dicts(node["schema"], json=json, one_number=one_number)
        return {**node, "function": {**function, "function": wrapped}, "schema": inner}
    if one_number and kind == "union" and [c.get("type") for c in node["choices"]] == ["int", "float"]:
        # A Klar number (see ``_base.number``): in JSON a strict float takes ints too, with the same
        # bounds, and one schema is quicker than trying two. The dict may then hold 5.0 for 5: it is
        # read for its numbers, never sent (the line's own bytes are).
        return {key: value for key, value in node["choices"][1].items() if key != "metadata"}
    if kind == "model":
        fields = {}
        for name, field in node["schema"]["fields"].items():
            schema, required = field["schema"], True
            if schema.get("type") == "default":
                schema, required = schema["schema"], False
            key = field.get("validation_alias") or name
            inner = _as_dicts(schema, json=json, one_number=one_number)
            fields[key] = core_schema.typed_dict_field(inner, required=required)
        # The model's config (strict: no "true" for a bool, no "5" for a number) goes along.
        config = {**node.get("config", {}), "extra_fields_behavior": "forbid"}
        typed = core_schema.typed_dict_schema(
            fields,
            extra_behavior="forbid",
            ref=node.get("ref"),
            config=config,  # type: ignore[arg-type]
        )
        return {key: value for key, value in typed.items() if value is not None}
    return {key: _as_dicts(value, json=json, one_number=one_number) for key, value in node.items()}


@functools.cache
def json_checker(model: type[BaseModel]) -> SchemaValidator:
    """Return a validator of ``model`` for raw JSON bytes that builds a plain dict of what it read.

    The dict holds what a JSON parser would make of a valid record (a whole number of a number field may
    read as a float); unknown keys and snake_case names are ``extra_forbidden`` errors.

    :param model: A Klar model.
    """
    # Caching only the keys (which repeat in every record) is quicker than caching every short string.
    return SchemaValidator(json_dict_schema(model), {**_CONFIG, "cache_strings": "keys"})


def json_dict_schema(model: type[BaseModel], *, one_number: bool = True) -> Any:
    """Return the core schema :func:`json_checker` compiles (also copied by ``_structs.struct_checker``).

    :param model: A Klar model.
    :param one_number: Make a number field one float schema, as the checker does (a whole number then
        reads as a float); ``False`` keeps the int and the float apart, for a copy whose output is sent.
    """
    return _as_dicts(model.__pydantic_core_schema__, json=True, one_number=one_number)
