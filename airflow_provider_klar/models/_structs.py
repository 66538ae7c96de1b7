"""A msgspec mirror of the JSON checker: a quicker first look at the bytes of one JSON object.

msgspec decodes a 3 KB order into typed structs in about a third of the time pydantic-core's JSON
checker needs (see ``docs/performance.md``). The mirror is built from the very schema copy the JSON
checker compiles (:func:`~._checkers.json_dict_schema`) and it only ever *vouches*: a record it takes
is one the JSON checker takes too, with the same values. Whatever it refuses goes to the JSON checker,
which decides and words the errors, so the mirror may be stricter than the models but never laxer:

- a schema part it does not know (a Python validator of a record, a length bound, a regular expression
  beyond ``^[A-Z]{3}$`` and its kind...) means no mirror for that model at all; an optional key that
  only Python code checks is left out of the mirror, so a record that sends it goes to the checker;
- a pattern's closing ``$`` becomes ``\\Z``: Python's ``$`` also matches before a final newline, the
  models' (Rust) ``$`` does not;
- a key given twice with a first value that is invalid is refused (the JSON checker keeps the last);
- only ``bundledProducts`` nest without bound, and msgspec reads far deeper than the JSON checker
  (``MAX_DEPTH`` levels): the mirror unrolls them to a depth well within it and refuses what is deeper.

Unknown keys get a second look (:meth:`QuickLook.with_unknown`): structs that ignore them check the
known keys, and a walk along the schema's shape (:class:`_Shape`) finds the unknown ones, named and
ordered as the JSON checker reports them. ``tests/unit/test_structs.py`` holds both looks side by side
with the JSON checker's path, on edge cases and on random records.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel

from airflow_provider_klar._jsonsafe import MAX_DEPTH

try:
    import msgspec
except ImportError:  # an environment that left msgspec out: the JSON checker does it all
    msgspec = None  # type: ignore[assignment]

#: The patterns the mirror takes: anchored character classes with counts, nothing whose meaning
#: could differ between Python's ``re`` and the Rust ``regex`` crate pydantic-core uses.
_SIMPLE_PATTERN = re.compile(r"\^(?:\[[A-Za-z0-9\-]+\](?:\{\d+(?:,\d+)?\})?)+\$")
#: Schema kinds that run Python code, which the mirror cannot copy.
_PYTHON_CHECKS = frozenset({"function-plain", "function-before", "function-after", "function-wrap"})
#: Keys of a schema node that do not change what it accepts.
_INERT = frozenset({"type", "ref", "metadata", "serialization"})
_modules = itertools.count()
#: How many references deep the mirror follows a recursive schema: ``bundledProducts`` some 35 levels
#: deep, about 80 levels of JSON, well within what pydantic-core reads. Deeper records go to the checker.
_LEVELS = 40


class _Unsupported(Exception):
    """A schema part the mirror cannot copy exactly."""


def _check_keys(node: dict[str, Any], allowed: set[str]) -> None:
    extra = set(node) - _INERT - allowed
    if extra:
        raise _Unsupported(f"{node['type']} with {sorted(extra)}")


class _Builder:
    """Build msgspec types from a core schema, each typed dict a ``Struct`` of a module of its own.

    A recursive schema (a line item's ``bundledProducts`` are line items) is unrolled to
    :data:`_LEVELS` references deep, and below that a reference takes nothing: msgspec reads far deeper
    than pydantic-core's limit of ``MAX_DEPTH`` levels, so the mirror's own types must stop first.
    """

    def __init__(
        self,
        *,
        forbid: bool = True,
        extras: Mapping[str, Collection[str]] | None = None,
        python: bool = False,
    ) -> None:
        #: Whether keys the models do not know are refused (else ignored: see QuickLook.with_unknown).
        self.forbid = forbid
        #: For Python values (msgspec.convert), not JSON: a number is an int or a finite float.
        self.python = python
        #: Unknown keys taken anyway, by the ref of the typed dict they were met in (see QuickLook.learn).
        self.extras = extras or {}
        #: Per struct made: its nested and extra fields, for finding the extra keys a record holds.
        self.plans: dict[type, _Plan] = {}
        # Structs refer to each other by name: msgspec resolves the names in their module.
        self.module = types.ModuleType(f"airflow_provider_klar.models._structs_{next(_modules)}")
        sys.modules[self.module.__name__] = self.module
        self.definitions: dict[str, dict[str, Any]] = {}
        self.built: dict[tuple[str, int], Any] = {}

    def convert(self, node: dict[str, Any], level: int = 0) -> Any:
        kind = node["type"]
        if kind == "definitions":
            self.definitions.update({d["ref"]: d for d in node["definitions"]})
            return self.convert(node["schema"], level)
        if kind == "definition-ref":
            return self._reference(node["schema_ref"], level + 1)
        if kind == "custom-error":
            return self.convert(node["schema"], level)
        if kind == "nullable":
            _check_keys(node, {"schema"})
            return Union[self.convert(node["schema"], level), None]  # noqa: UP007 (a name may be a str)
        if kind == "float":
            return self._float(node)
        if kind == "union" and self.python and [c["type"] for c in node["choices"]] == ["int", "float"]:
            # A Klar number (``_base.number``): an int stays an int, so the dict made of it is sent as is.
            _check_keys(node, {"choices", "mode"})
            whole, fraction = node["choices"]
            _check_keys(whole, {"strict", "ge", "gt", "le", "lt"})
            bounds = _bounds(whole)
            return Union[Annotated[int, msgspec.Meta(**bounds)] if bounds else int, self._float(fraction)]  # noqa: UP007
        if kind == "str":
            _check_keys(node, {"strict", "pattern"})
            pattern = node.get("pattern")
            if pattern is None:
                return str
            if not _SIMPLE_PATTERN.fullmatch(pattern):
                raise _Unsupported(f"pattern {pattern!r}")
            return Annotated[str, msgspec.Meta(pattern=pattern[:-1] + r"\Z")]
        if kind == "bool":
            _check_keys(node, {"strict"})
            return bool
        if kind == "literal":
            _check_keys(node, {"expected"})
            if not all(type(value) is str for value in node["expected"]):
                raise _Unsupported("literal of other than strings")
            return Literal[tuple(node["expected"])]
        if kind == "list":
            _check_keys(node, {"items_schema", "strict"})
            return list[self.convert(node["items_schema"], level)]  # type: ignore[misc]
        if kind == "typed-dict":
            return self._struct(node, level)
        raise _Unsupported(kind)

    def _float(self, node: dict[str, Any]) -> Any:
        _check_keys(node, {"strict", "allow_inf_nan", "ge", "gt", "le", "lt"})
        if node.get("allow_inf_nan", True):
            raise _Unsupported("float that allows NaN")
        bounds = _bounds(node)
        if self.python:
            # JSON holds no NaN or infinity, but a Python float may: bounds on both sides refuse them
            # (NaN fails every comparison).
            if "ge" not in bounds and "gt" not in bounds:
                bounds["ge"] = -sys.float_info.max
            if "le" not in bounds and "lt" not in bounds:
                bounds["le"] = sys.float_info.max
        return Annotated[float, msgspec.Meta(**bounds)] if bounds else float

    def _reference(self, ref: str, level: int) -> Any:
        if level > _LEVELS:
            return self._nothing()
        # A reference always leads a level down, so a struct is complete before anything refers to it.
        if (ref, level) not in self.built:
            self.built[ref, level] = self.convert(self.definitions[ref], level)
        return self.built[ref, level]

    def _nothing(self) -> Any:
        # One required field whose value would have to be above 1 and below 0: nothing passes, also
        # where unknown keys are ignored.
        if ("", 0) not in self.built:
            impossible = Annotated[float, msgspec.Meta(gt=1, lt=0)]
            self.built["", 0] = self._define("nothing", [("f0", impossible)], [], {"f0": "f0"})
        return self.built["", 0]

    def _struct(self, node: dict[str, Any], level: int) -> Any:
        _check_keys(node, {"fields", "extra_behavior", "config"})
        config = node.get("config", {})
        if node.get("extra_behavior") != "forbid" or config.get("strict") is not True:
            raise _Unsupported("typed dict that is lax or takes unknown keys")
        required: list[tuple[str, Any]] = []
        optional: list[tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        nested: list[tuple[str, str, tuple[type, ...]]] = []
        for index, (key, field) in enumerate(node["fields"].items()):
            _check_keys(field, {"schema", "required"})
            if field["schema"]["type"] in _PYTHON_CHECKS and field.get("required") is False:
                # A key that only Python code may check (bundledProducts in 12.2022, an error there) is
                # left out: a record that sends it is refused as having an unknown key, and the JSON
                # checker runs the code. Without the key, the code would not run either.
                continue
            # Attribute names of our own; the JSON names (any string) live in ``rename``.
            attribute = f"f{index}"
            rename[attribute] = key
            kind = self.convert(field["schema"], level)
            children = _structs_in(kind)
            if children:
                nested.append((attribute, key, children))
            if field.get("required", True):
                required.append((attribute, kind))
            else:
                optional.append((attribute, Union[kind, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
        ref = node.get("ref") or ""
        extra = []
        for index, key in enumerate(sorted(self.extras.get(ref, ()))):
            rename[f"x{index}"] = key
            optional.append((f"x{index}", Any, msgspec.UNSET))
            extra.append((f"x{index}", key))
        name = f"{ref}_{level}" if ref else f"anonymous_{len(vars(self.module))}"
        struct = self._define(name, required, optional, rename)
        self.plans[struct] = _Plan(tuple(nested), tuple(extra))
        return struct

    def _define(
        self,
        name: str,
        required: list[tuple[str, Any]],
        optional: list[tuple[str, Any, Any]],
        rename: dict[str, str],
    ) -> Any:
        struct = msgspec.defstruct(
            _name(name),
            [*required, *optional],
            rename=rename,
            forbid_unknown_fields=self.forbid,
            module=self.module.__name__,
        )
        setattr(self.module, _name(name), struct)
        return struct


def _bounds(node: dict[str, Any]) -> dict[str, Any]:
    return {k: node[k] for k in ("ge", "gt", "le", "lt") if node.get(k) is not None}


def _name(ref: str) -> str:
    return "S_" + re.sub(r"\W", "_", ref)


@dataclass(eq=False)
class _Shape:
    """Where a typed dict's keys lead: the keys it knows, and those that hold typed dicts (or lists of them).

    Only for finding unknown keys in a record the mirror took; ``nested`` is in the schema's field order,
    the order in which the JSON checker reports what it finds below each key.
    """

    known: frozenset[str] = frozenset()
    nested: tuple[tuple[str, _Shape], ...] = ()
    #: Keys only Python code checks (left out of the structs): a record holding one is not vouched for.
    python: frozenset[str] = frozenset()
    #: The typed dict's ref ("" for none): what the unknown keys met in it are learned by.
    ref: str = ""


def _shape_of(node: dict[str, Any], definitions: dict[str, dict[str, Any]], built: dict[str, _Shape]) -> Any:
    """Return the shape of the typed dicts ``node`` holds (directly or in a list), or ``None``."""
    kind = node["type"]
    if kind == "definitions":
        definitions.update({d["ref"]: d for d in node["definitions"]})
        return _shape_of(node["schema"], definitions, built)
    if kind == "definition-ref":
        ref = node["schema_ref"]
        if ref not in built:
            built[ref] = _Shape()  # filled in below; a recursive reference meanwhile gets this object
            filled = _shape_of(definitions[ref], definitions, built)
            shape = built[ref]
            shape.known, shape.nested, shape.python, shape.ref = (
                filled.known,
                filled.nested,
                filled.python,
                filled.ref,
            )
        return built[ref]
    if kind in ("custom-error", "nullable"):
        return _shape_of(node["schema"], definitions, built)
    if kind == "list":
        return _shape_of(node["items_schema"], definitions, built)
    if kind == "typed-dict":
        nested = []
        for key, field in node["fields"].items():
            child = _shape_of(field["schema"], definitions, built)
            if child is not None:
                nested.append((key, child))
        python = frozenset(
            key for key, field in node["fields"].items() if field["schema"]["type"] in _PYTHON_CHECKS
        )
        return _Shape(frozenset(node["fields"]) - python, tuple(nested), python, node.get("ref") or "")
    return None


def _unknown_paths(
    record: dict[str, Any], shape: _Shape, prefix: str, found: list[str], met: set[tuple[str, str]]
) -> bool:
    """Add the dotted paths of the keys ``shape`` does not know, in the order the JSON checker reports them.

    That order, for each object: what it finds below the known keys (in the schema's field order), then
    the object's own unknown keys, in the record's order. Each unknown key goes into ``met`` too, with
    the ref of the typed dict it was met in. Returns ``False`` (and stops) at a key only Python code
    checks: the record is not vouched for.
    """
    for key, child in shape.nested:
        value = record.get(key)
        if type(value) is dict:
            if not _unknown_paths(value, child, f"{prefix}{key}.", found, met):
                return False
        elif type(value) is list:
            for index, item in enumerate(value):
                path = f"{prefix}{key}.{index}."
                if type(item) is dict and not _unknown_paths(item, child, path, found, met):
                    return False
    known = shape.known
    if not record.keys() <= known:
        if shape.python and not shape.python.isdisjoint(record):
            return False
        # (An unknown value holds no infinite number: msgspec refuses numbers beyond a double.)
        for key in record:
            if key not in known:
                found.append(prefix + key)
                met.add((shape.ref, key))
    return True


@dataclass(frozen=True)
class _Plan:
    """A struct's fields that hold structs (attribute, JSON key, struct types) and its extra keys."""

    nested: tuple[tuple[str, str, tuple[type, ...]], ...]
    extras: tuple[tuple[str, str], ...]


def _structs_in(kind: Any) -> tuple[type, ...]:
    """The struct types in a field's type (``list[S]``, ``S | None``...)."""
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return (kind,)
    return tuple(s for arg in typing.get_args(kind) for s in _structs_in(arg))


def _walks(plans: dict[type, _Plan]) -> dict[type, _Plan]:
    """The plans cut to what a look for extra keys must visit: only fields below which one may sit."""
    memo: dict[type, bool] = {}

    def holds(struct: type) -> bool:
        if struct not in memo:
            memo[struct] = False  # (no cycles: each level's structs refer to the next level's)
            plan = plans.get(struct)
            memo[struct] = plan is not None and (
                bool(plan.extras) or any(holds(c) for _, _, children in plan.nested for c in children)
            )
        return memo[struct]

    return {
        struct: _Plan(
            tuple(entry for entry in plan.nested if any(holds(child) for child in entry[2])), plan.extras
        )
        for struct, plan in plans.items()
        if holds(struct)
    }


def _extra_paths(obj: Any, walks: dict[type, _Plan], prefix: str, found: list[str]) -> bool:
    """Add the paths of the extra keys ``obj`` (a decoded struct) holds, in the JSON checker's order.

    Returns ``False`` when one object holds two or more: their order in the record is not known here.
    """
    plan = walks.get(type(obj))
    if plan is None:
        return True  # nothing below it can hold an extra key
    for attribute, key, _ in plan.nested:
        value = getattr(obj, attribute)
        if type(value) is list:
            for index, item in enumerate(value):
                if not _extra_paths(item, walks, f"{prefix}{key}.{index}.", found):
                    return False
        elif value is not msgspec.UNSET and not _extra_paths(value, walks, f"{prefix}{key}.", found):
            return False
    present = [key for attribute, key in plan.extras if getattr(obj, attribute) is not msgspec.UNSET]
    if len(present) > 1:
        return False
    found.extend(prefix + key for key in present)
    return True


class QuickLook:
    """The mirror's looks at the bytes of one JSON object, and at a dict (see :func:`struct_checker`).

    :param strict: Decodes into structs that refuse unknown keys.
    :param lenient: Decodes into structs that ignore them.
    :param shape: The shape of the record's typed dicts.
    :param schema: The schema the structs were built from (rebuilt with learned keys, see :meth:`learn`).
    :param python: The struct type that refuses unknown keys, for Python values (:meth:`of_dict`), or
        ``None`` for no such look.
    """

    def __init__(
        self,
        strict: Callable[[bytes], Any],
        lenient: Callable[[bytes], Any],
        shape: _Shape,
        schema: Any,
        python: Any = None,
    ) -> None:
        self._strict = strict
        self._lenient = lenient
        self._shape = shape
        self._schema = schema
        self._python = python
        self._convert = msgspec.convert
        self._to_builtins = msgspec.to_builtins
        self._plain = msgspec.json.Decoder().decode
        self._encode = msgspec.json.Encoder().encode
        #: Unknown keys learned from records, by typed dict ref; and the structs that take them.
        self._learned: dict[str, frozenset[str]] = {}
        self._with_learned: tuple[Callable[[bytes], Any], dict[type, _Plan]] | None = None
        self._rebuilds = 0

    def __call__(self, data: bytes) -> dict[str, Any] | None:
        """Return the dict the JSON checker would build for a record without unknown keys, or ``None``."""
        try:
            # to_builtins leaves out the fields the record did not send (UNSET), as the checker does.
            record: dict[str, Any] = self._to_builtins(self._strict(data))
        except Exception:  # anything it refuses, it refuses: the JSON checker decides and explains
            return None
        return record

    def of_dict(self, record: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
        """Return a dict without unknown keys as the models read it, and its JSON bytes; or ``None``.

        The dict's values are checked where they are (no JSON in between), by structs that take
        Python values. Those are laxer than the models in one way: they take a tuple or a set for a
        list. So what they read is made a dict again (lists, plain numbers), which must equal the
        record: a tuple or a set never does. That dict is what is encoded and returned: the models take
        a ``Decimal`` for a number and dump it as a float, and so does this (for a ``Decimal`` equal to
        its float; any other is left to the dict checker). Its keys are in the models' order. ``None``
        for anything else: an unknown key, an invalid value, a value the structs do not take as it is.

        :param record: The record, as given (``records=``, an SQL row, a CSV row).
        """
        python = self._python
        if python is None:
            return None
        try:
            out: dict[str, Any] = self._to_builtins(self._convert(record, python, strict=True))
            if out != record:
                return None
            data: bytes = self._encode(out)
        except Exception:  # anything it refuses, it refuses: the other looks and the dict checker decide
            return None
        return out, data

    def encode(self, record: dict[str, Any]) -> bytes | None:
        """Return a dict's JSON bytes, or ``None`` when it cannot be encoded (for a look at them).

        :param record: The record, as given (``records=``, an SQL row, a CSV row).
        """
        try:
            data: bytes = self._encode(record)
        except Exception:  # not encodable: the dict checker decides and explains
            return None
        return data

    def with_learned(self, data: bytes) -> tuple[dict[str, Any], tuple[str, ...]] | None:
        """Like :meth:`with_unknown`, quicker, for records whose unknown keys were all met before.

        Structs that take the learned keys (any JSON value) where they were met, and refuse any other,
        decode the record; the learned keys it holds are its unknown keys. ``None`` when nothing was
        learned, for any other record, and for one object holding two learned keys (their order).
        """
        state = self._with_learned
        if state is None or data.count(b"[") + data.count(b"{") >= MAX_DEPTH - _DEPTH_MARGIN:
            return None
        decode, walks = state
        try:
            obj = decode(data)
        except Exception:
            return None
        found: list[str] = []
        if not _extra_paths(obj, walks, "", found):
            return None
        record: dict[str, Any] = self._to_builtins(obj)
        return record, tuple(found)

    def learn(self, met: Collection[tuple[str, str]]) -> None:
        """Take the unknown keys of a record the upload accepted into :meth:`with_learned`'s structs.

        :param met: (typed dict ref, key) pairs, as :meth:`with_unknown` gives them.
        """
        new = [(ref, key) for ref, key in met if key not in self._learned.get(ref, ())]
        if not new or self._rebuilds >= _MOST_REBUILDS:
            return
        learned = dict(self._learned)
        for ref, key in new:
            learned[ref] = learned.get(ref, frozenset()) | {key}
        if sum(len(keys) for keys in learned.values()) > _MOST_LEARNED:
            return
        builder = _Builder(forbid=True, extras=learned)
        try:
            decode = msgspec.json.Decoder(builder.convert(self._schema)).decode
        except (_Unsupported, TypeError, ValueError):
            return
        self._learned, self._rebuilds = learned, self._rebuilds + 1
        # One assignment: a thread using the old structs meanwhile gets a complete old state.
        self._with_learned = (decode, _walks(builder.plans))

    def with_unknown(
        self, data: bytes
    ) -> tuple[dict[str, Any], tuple[str, ...], set[tuple[str, str]]] | None:
        """Return the dict of a record that is valid but for unknown keys, and their paths; or ``None``.

        The dict is what the JSON checker's path builds for such a record (what ``from_json`` reads,
        unknown keys kept), and the paths are those it reports, in its order; then the (typed dict ref,
        key) of each unknown key, for :meth:`learn`. ``None`` for anything
        else, and for a line that might be nested deeper than the checker reads (an unknown key may hold
        anything).
        """
        if data.count(b"[") + data.count(b"{") >= MAX_DEPTH - _DEPTH_MARGIN:
            return None
        try:
            self._lenient(data)  # the known keys' values, checked as the models check them
            # The values from_json would read (msgspec is quicker, and refuses numbers beyond a double).
            record = self._plain(data)
        except Exception:
            return None
        if type(record) is not dict:
            return None
        found: list[str] = []
        met: set[tuple[str, str]] = set()
        if not _unknown_paths(record, self._shape, "", found, met):
            return None
        return record, tuple(found), met


#: At most so many rebuilds of the structs that take learned keys, and so many learned keys: records
#: whose unknown keys vary without end keep the slower look.
_MOST_REBUILDS = 16
_MOST_LEARNED = 64
#: Brackets short of ``MAX_DEPTH`` at which the look for unknown keys stops: the JSON checker's own
#: limits on an unknown value's depth are then certainly not reached.
_DEPTH_MARGIN = 10


@functools.cache
def struct_checker(model: type[BaseModel]) -> QuickLook | None:
    """Return the mirror's quick look at one JSON object's bytes for ``model``.

    Its call gives the dict the JSON checker would build, or ``None`` for "not vouched for" (invalid,
    unknown keys...): ask :meth:`QuickLook.with_unknown` (unknown keys) or the JSON checker. ``None``
    instead of a look when msgspec is not installed or the model's schema has a part the mirror cannot
    copy exactly.

    :param model: A Klar model.
    """
    if msgspec is None:
        return None
    # Imported here: _checkers imports nothing of this module, and this keeps the dependency one way.
    from airflow_provider_klar.models._checkers import json_dict_schema

    schema = json_dict_schema(model)
    try:
        strict = msgspec.json.Decoder(_Builder(forbid=True).convert(schema)).decode
        lenient = msgspec.json.Decoder(_Builder(forbid=False).convert(schema)).decode
    except (_Unsupported, TypeError, ValueError):
        return None
    shape = _shape_of(schema, {}, {})
    if not isinstance(shape, _Shape):
        return None
    try:
        python = _Builder(forbid=True, python=True).convert(json_dict_schema(model, one_number=False))
    except (_Unsupported, TypeError, ValueError):
        python = None
    return QuickLook(strict, lenient, shape, schema, python)
