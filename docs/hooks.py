"""MkDocs hook: render the models' JSON Schema as field tables, so the docs cannot drift from the code.

A page writes ``<!-- klar-schema: orders 07.2025 -->`` on a line of its own; the hook replaces it with
one table per object (the resource's model first, then every nested object) built from
``airflow_provider_klar.models.json_schema(resource, version)``: the JSON (camelCase) name, the type,
whether it is required, the constraints, and the field's description.
"""

from __future__ import annotations

import re
from typing import Any

_MARKER = re.compile(r"^<!-- klar-schema: (?P<resource>[\w-]+) (?P<version>\d\d\.\d{4}) -->$", re.MULTILINE)
_CONSTRAINTS = (
    ("minimum", ">= {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} characters"),
    ("maxLength", "at most {} characters"),
    ("pattern", "matches `{}`"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
)


def _anchor(name: str) -> str:
    return f"schema-{name.lower()}"


def _type(schema: dict[str, Any], prefix: str) -> str:
    """Render a property's type as Markdown: refs become links to the nested object's table."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(prefix + name)})"
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            parts = [_type(option, prefix) for option in schema[combinator]]
            return " or ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return " / ".join(f"`{value}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), prefix)}"
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind or "any")


def _constraints(schema: dict[str, Any]) -> str:
    found: list[str] = []
    for option in [schema, *schema.get("anyOf", [])]:
        found.extend(template.format(option[key]) for key, template in _CONSTRAINTS if key in option)
    return ", ".join(dict.fromkeys(found))


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _table(name: str, schema: dict[str, Any], prefix: str) -> str:
    """Return the Markdown section for one object of the schema."""
    lines = [f"#### {name} {{#{_anchor(prefix + name)}}}", ""]
    if schema.get("description"):
        lines += [_cell(schema["description"]), ""]
    required = set(schema.get("required", ()))
    lines += ["| Field | Type | Required | Constraints | Description |", "|---|---|---|---|---|"]
    for field, prop in schema.get("properties", {}).items():
        lines.append(
            f"| `{field}` | {_type(prop, prefix)} | {'yes' if field in required else ''} | "
            f"{_cell(_constraints(prop))} | {_cell(prop.get('description', ''))} |"
        )
    return "\n".join(lines) + "\n"


def render_schema(resource: str, version: str) -> str:
    """Return the Markdown tables of every object in the JSON Schema of ``(resource, version)``."""
    from airflow_provider_klar.models import json_schema

    schema = json_schema(resource, version)
    # Anchors are unique per page only if each rendered schema gets its own prefix.
    prefix = f"{resource}-{version.replace('.', '')}-"
    title = schema.get("title", resource)
    sections = [_table(title, schema, prefix)]
    for name, definition in sorted(schema.get("$defs", {}).items()):
        if definition.get("type") == "object" or "properties" in definition:
            sections.append(_table(name, definition, prefix))
    return "\n".join(sections)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each schema marker of a page with the rendered tables."""
    return _MARKER.sub(lambda m: render_schema(m["resource"], m["version"]), markdown)
