"""Compiled copies of the models' schemas that check a record without building a model instance.

The record validator's fast paths (see :mod:`~airflow_provider_klar.models.validation`) run one of these
per record. Both report unknown keys as ``extra_forbidden`` errors, so finding them needs no Python walk:

- :func:`python_checker` checks a dict already in memory;
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


def _forbid_extras(node: Any, shadows: dict[type, type]) -> Any:
    """Return a copy of a core schema that rejects unknown keys, model instances and Decimals.

    Every model's ``cls`` becomes a plain shadow class nobody else instantiates, so a model instance
    nested in a dict fails here (and takes the slow path, which dumps it) instead of being passed on;
    likewise a float field refuses a Decimal here, which the model itself takes and makes a float.
    """
    if isinstance(node, list):
        return [_forbid_extras(n, shadows) for n in node]
    if not isinstance(node, dict):
        return node
    new = {key: _forbid_extras(value, shadows) for key, value in node.items()}
    if (node.get("metadata") or {}).get(PYTHON_ONLY):
        # A Decimal passes a strict float but cannot be sent as it is: refuse it here, so it is dumped.
        return core_schema.chain_schema([core_schema.is_instance_schema(float), new])
    if node.get("type") == "model":
        cls = node["cls"]
        if cls not in shadows:
            shadows[cls] = type(f"_Checked{cls.__name__}", (), {"__module__": __name__})
        new["cls"] = shadows[cls]
        # Names off: a snake_case key is then reported like an unknown one, and such records dumped.
        new["config"] = {
            **node.get("config", {}),
            "extra_fields_behavior": "forbid",
            "validate_by_name": False,
        }
    elif node.get("type") == "model-fields":
        new["extra_behavior"] = "forbid"
    return new


@functools.cache
def python_checker(model: type[BaseModel]) -> SchemaValidator:
    """Return a validator of ``model`` for dicts that reports unknown keys as ``extra_forbidden`` errors.

    :param model: A Klar model.
    """
    return SchemaValidator(_forbid_extras(model.__pydantic_core_schema__, {}), _CONFIG)


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


def _on_dicts(function: Callable[..., Any], model: type[BaseModel], with_info: bool) -> Callable[..., Any]:
    """Run a model's after-validator on the dict the JSON checker builds; return the dict."""
    names = {name: info.alias or name for name, info in model.model_fields.items()}

    def check(record: dict[str, Any], *info: Any) -> dict[str, Any]:
        function(_AsModel(record, names), *info)
        return record

    return check


def _as_dicts(node: Any) -> Any:
    """Return a copy of a core schema that validates JSON into plain dicts keyed by the JSON names.

    Each model becomes a typed dict whose keys are the camelCase names, fields with a default become
    optional keys without the default (a dict holds only what the record holds), and unknown keys are
    ``extra_forbidden``. A model's after-validators see the dict through :class:`_AsModel`.
    """
    if isinstance(node, list):
        return [_as_dicts(n) for n in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if kind == "function-after" and node["schema"].get("type") == "model":
        function = node["function"]
        with_info = function["type"] == "with-info"
        wrapped = _on_dicts(function["function"], node["schema"]["cls"], with_info)
        return {**node, "function": {**function, "function": wrapped}, "schema": _as_dicts(node["schema"])}
    if kind == "union" and [choice.get("type") for choice in node["choices"]] == ["int", "float"]:
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
            fields[key] = core_schema.typed_dict_field(_as_dicts(schema), required=required)
        typed = core_schema.typed_dict_schema(fields, extra_behavior="forbid", ref=node.get("ref"))
        return {key: value for key, value in typed.items() if value is not None}
    return {key: _as_dicts(value) for key, value in node.items()}


@functools.cache
def json_checker(model: type[BaseModel]) -> SchemaValidator:
    """Return a validator of ``model`` for raw JSON bytes that builds a plain dict of what it read.

    The dict holds what a JSON parser would make of a valid record (a whole number of a number field may
    read as a float); unknown keys and snake_case names are ``extra_forbidden`` errors.

    :param model: A Klar model.
    """
    # Caching only the keys (which repeat in every record) is quicker than caching every short string.
    return SchemaValidator(_as_dicts(model.__pydantic_core_schema__), {**_CONFIG, "cache_strings": "keys"})
