"""The sandbox's OpenAPI page (``/docs``): Klar's contract, with request bodies from the models' schemas."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from airflow_provider_klar.sandbox.contract import CONTRACT, MAX_OBJECTS, ResourceContract

log = logging.getLogger(__name__)

APP_DESCRIPTION = """\
A local stand-in for [Klar's Open API](https://open-api.getklar.com), for development and tests.
It validates with the same models as `airflow-provider-klar` and stores what it accepts in SQLite.

- Every Klar route needs `Authorization: Bearer <token>` (401 otherwise).
- At most {max_batch} objects per request: more is **413**.
- Sending an object again with the same id (the `orderId`, plus `lineItemId`/`sku` for COGS)
  overwrites it.
- Query flags on `/json` and `/validate`: `failedOrderIds=true` (orders only) and `newErrors=true`
  choose the error shape; see each route.
- `GET /<resource>/status` counts `/json` submissions: `total` (objects stored, re-sends counted
  again), `lastBatchCount` (objects the latest stored submission stored), `lastSuccess` (latest
  submission that stored something: 2xx, including 207) and `lastFailure` (latest `/json` refused with
  400 or 413). Counts are strings; times ISO 8601 with milliseconds and `Z`, or `null`.

Routes under `/_sandbox/` are the sandbox's own (inspection, faults, reset) and need no token.
"""

TAGS = [{"name": name, "description": f"Klar's `{name}` resource."} for name in CONTRACT] + [
    {"name": "Sandbox inspection (not Klar)", "description": "What the sandbox received; fault knobs."}
]

_VALID = {"status": "VALID"}
_FLAT = {
    "status": "INVALID",
    "errors": [{"id": "ORD-1", "key": "0.lineItems.0.taxes.0.taxRate", "message": "...", "value": "19%"}],
}
_PARTIAL = {
    "status": "PARTIALLY_VALID",
    "errors": [{"id": "ORD-2", "key": "1.createdAt", "message": "...", "value": 1.69e22}],
    "failedOrderIds": ["ORD-2"],
    "successfulOrderIds": ["ORD-1"],
}
_STRINGS = {
    "status": "INVALID",
    "orderIds": ["ORD-2"],
    "errors": ["orders.1.createdAt: (1.69e+22) has to be a unix timestamp! (isTimestamp)"],
}
_CLASS_VALIDATOR = [
    {
        "target": {"id": "ORD-1"},
        "value": {"id": "ORD-1"},
        "property": "0",
        "children": [
            {
                "target": {"taxRate": "17%"},
                "value": "17%",
                "property": "taxRate",
                "children": [],
                "constraints": {"isNumber": "taxRate must be a number"},
            }
        ],
    }
]


def _example(description: str, example: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"description": description}
    if example is not None:
        entry["content"] = {"application/json": {"example": example}}
    return entry


def _body_placeholder(row: ResourceContract, version: str, mode: str) -> dict[str, Any]:
    array: dict[str, Any] = {"type": "array", "maxItems": MAX_OBJECTS, "items": {"type": "object"}}
    schema = (
        array
        if row.envelope == "array"
        else {"type": "object", "required": ["items"], "properties": {"items": array}}
    )
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "security": [{"bearer": []}],
        "x-klar": {"resource": row.name, "version": version, "mode": mode},
    }


def route_doc(row: ResourceContract, version: str, mode: str) -> dict[str, Any]:
    """Return ``add_api_route`` keyword arguments documenting one of Klar's POST routes."""
    code, body = row.success(mode).code, row.success(mode).body
    verb = "Store (create or overwrite)" if mode == "upload" else "Check, without storing,"
    shape = "a JSON array" if row.envelope == "array" else '`{"items": [...]}`'
    if not row.envelope_certain:
        shape += " (by default; the sandbox's `envelope` switch makes it expect a bare array instead)"
    lines = [
        f"{verb} up to {MAX_OBJECTS} `{row.name}` objects of API version `{version}`.",
        "",
        f"Body: {shape}. Another wrapper is a 400 naming the expected shape; more than "
        f"{MAX_OBJECTS} objects is a 413.",
        "",
        f"All valid: **{code}** with " + ("an empty body." if body is None else '`{"status":"VALID"}`.'),
        "",
        "Any invalid (nothing stored), by query flags:",
    ]
    if row.partial_success:
        lines += [
            "- `failedOrderIds=true&newErrors=true`: 400 flat errors with `failedOrderIds`;",
            "- `failedOrderIds=true`: 400 `orderIds` and plain-string errors;",
        ]
    if row.flat_by_default:
        lines.append("- always: 400 flat `{status: INVALID, errors: [{id, key, message, value}]}`.")
    else:
        lines += [
            "- `newErrors=true`: 400 flat "
            "`{status: INVALID, errors: [{id, key: '<index>.<path>', message, value}]}`;",
            "- no flag: 400 class-validator array nested through `children`.",
        ]
    responses: dict[int | str, dict[str, Any]] = {
        code: _example("Every object valid.", None if body is None else dict(body))
    }
    if row.partial_success and mode == "upload":
        lines += [
            "",
            "With `failedOrderIds=true`, a batch mixing valid and invalid orders is **207** "
            "`PARTIALLY_VALID`: the valid orders are stored, the others listed in `failedOrderIds`.",
        ]
        responses[207] = _example("Some orders stored, some refused.", _PARTIAL)
    responses[400] = _example("Invalid objects (nothing stored), or a wrong body wrapper.", _FLAT)
    if row.name == "orders":
        responses[400]["content"]["application/json"] = {
            "examples": {
                "newErrors": {"value": _FLAT},
                "failedOrderIds": {"value": _STRINGS},
                "no flag": {"value": _CLASS_VALIDATOR},
            }
        }
    responses[401] = _example("Missing or wrong bearer token.")
    responses[413] = _example(f"More than {MAX_OBJECTS} objects.")
    responses[429] = _example("Rate limited (fault injection); see `Retry-After`.")
    return {
        "summary": f"{'Upload' if mode == 'upload' else 'Validate'} {row.name} ({version})",
        "description": "\n".join(lines),
        "tags": [row.name],
        "status_code": code,
        "responses": responses,
        "openapi_extra": _body_placeholder(row, version, mode),
    }


def status_doc(row: ResourceContract) -> dict[str, Any]:
    """Return ``add_api_route`` keyword arguments documenting a status route."""
    example = {
        "total": "2",
        "lastBatchCount": "1",
        "lastSuccess": "2023-03-14T09:06:42.281Z",
        "lastFailure": None,
    }
    return {
        "summary": f"Status of {row.name}",
        "description": (
            "Counters of `/json` submissions for this data source (token), all versions together. "
            "Counts are strings."
        ),
        "tags": [row.name],
        "responses": {200: _example("The counters.", example), 401: _example("Missing or wrong token.")},
        "openapi_extra": {"security": [{"bearer": []}]},
    }


def _relocate(node: Any, version: str) -> Any:
    # The models' schemas refer to "#/$defs/X"; OpenAPI keeps shared schemas under components.
    if isinstance(node, dict):
        out = {k: _relocate(v, version) for k, v in node.items() if k != "$defs"}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = f"#/components/schemas/{ref[len('#/$defs/') :]}_{version}"
        return out
    if isinstance(node, list):
        return [_relocate(v, version) for v in node]
    return node


def _model_ref(resource: str, version: str, schemas: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_klar.models import json_schema

    schema = json_schema(resource, version)
    for name, definition in schema.get("$defs", {}).items():
        schemas[f"{name}_{version}"] = _relocate(definition, version)
    name = f"{schema.get('title', resource)}_{version}"
    schemas[name] = _relocate(schema, version)
    return {"$ref": f"#/components/schemas/{name}"}


def install_openapi(app: FastAPI) -> None:
    """Make ``app`` build its OpenAPI document with the models' JSON schemas as request bodies."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "The sandbox's token."}
        }
        schemas = components.setdefault("schemas", {})
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                klar = operation.get("x-klar") if isinstance(operation, dict) else None
                if not klar:
                    continue
                try:
                    ref = _model_ref(klar["resource"], klar["version"], schemas)
                except Exception:  # the docs must render even if one schema cannot be built
                    log.warning("No JSON schema for %s %s.", klar["resource"], klar["version"], exc_info=True)
                    continue
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                array = body if body.get("type") == "array" else next(iter(body["properties"].values()))
                array["items"] = ref
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
