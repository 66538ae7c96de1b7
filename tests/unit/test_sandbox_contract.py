"""The provider's resource table against the sandbox's own reading of Klar's wire contract.

The sandbox does not import ``resources.py`` (a test below checks that), so a wrong path, version,
envelope, success code, status path or id field in the provider's table shows up here, and in every
end-to-end test, instead of passing by construction.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from airflow_provider_klar.resources import MAX_BATCH_SIZE, RESOURCES, KlarResource
from airflow_provider_klar.sandbox.contract import (
    CONTRACT,
    FAILED_ORDER_IDS,
    MAX_OBJECTS,
    NEW_ERRORS,
    get_contract,
)

SANDBOX = Path(__file__).parents[2] / "airflow_provider_klar" / "sandbox"
#: Codes that mean "the whole batch was taken": 207 is a partial success and must not be among them.
WHOLE_SUCCESS = frozenset({200, 201, 202})


def disagreements(row: KlarResource) -> list[str]:
    """Every way the provider's row for a resource differs from the sandbox's contract."""
    found: list[str] = []
    if row.name not in CONTRACT:
        return [f"{row.name}: Klar has no such resource"]
    klar = CONTRACT[row.name]
    if row.versions != klar.versions:
        found.append(f"{row.name}: versions {row.versions} != {klar.versions}")
    if row.default_version not in klar.versions:
        found.append(f"{row.name}: default version {row.default_version} is not one Klar has")
    if row.has_validate != ("validate" in klar.modes):
        found.append(f"{row.name}: has_validate={row.has_validate}, Klar modes {klar.modes}")
    for mode in ("upload", "validate"):
        if mode not in klar.modes:
            if row.success_codes(mode):
                found.append(f"{row.name}: success codes for a {mode} route Klar does not have")
            continue
        for version in klar.versions:
            ours, theirs = row.path(version, mode), klar.path(version, mode)
            if ours != theirs:
                found.append(f"{row.name}: {mode} path {ours} != {theirs}")
        code = klar.success(mode).code
        if code not in row.success_codes(mode):
            found.append(f"{row.name}: {mode} success code {code} not in {sorted(row.success_codes(mode))}")
        if not row.success_codes(mode) <= WHOLE_SUCCESS:
            found.append(f"{row.name}: {mode} success codes {sorted(row.success_codes(mode))} beyond 200-202")
        shape = "array" if row.wrapper(mode) is None else row.wrapper(mode)
        if shape != klar.envelope:
            found.append(f"{row.name}: {mode} envelope {shape!r} != Klar's default {klar.envelope!r}")
    if row.status_path != klar.status_path:
        found.append(f"{row.name}: status path {row.status_path} != {klar.status_path}")
    if row.id_field != klar.id_field:
        found.append(f"{row.name}: id field {row.id_field} != {klar.id_field}")
    if row.key_fields != klar.key_fields:
        found.append(f"{row.name}: key fields {row.key_fields} != {klar.key_fields}")
    unknown = set(row.query) - klar.flags
    if unknown:
        found.append(f"{row.name}: query flags {sorted(unknown)} that Klar does not know there")
    # klar-api.md: "A client should send ?failedOrderIds=true&newErrors=true on orders".
    wanted = {FAILED_ORDER_IDS, NEW_ERRORS} if klar.partial_success else set()
    if not klar.flat_by_default and NEW_ERRORS in klar.flags:
        wanted.add(NEW_ERRORS)  # the other shapes carry no index or id to attribute a rejection by
    missing = {flag for flag in wanted if row.query.get(flag) != "true"}
    if missing:
        found.append(f"{row.name}: query flags {sorted(missing)} not sent as true")
    return found


def test_the_provider_table_matches_the_sandbox_contract() -> None:
    assert set(RESOURCES) == set(CONTRACT)
    assert MAX_BATCH_SIZE == MAX_OBJECTS
    assert [problem for row in RESOURCES.values() for problem in disagreements(row)] == []


class _WrongPath(KlarResource):
    def path(self, version: str, mode: str) -> str:
        return f"/{version}/{self.name}/{'validate' if mode == 'validate' else 'upload'}"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"versions": ("12.2022",)}, "versions"),
        ({"default_version": "01.2030"}, "default version"),
        ({"json_codes": frozenset({200})}, "upload success code 201"),
        ({"json_codes": frozenset({201, 207})}, "beyond 200-202"),
        ({"validate_codes": frozenset({202})}, "validate success code 201"),
        ({"json_wrapper": "items"}, "upload envelope 'items'"),
        ({"status_path": "/07.2025/orders/status"}, "status path"),
        ({"id_field": "orderId"}, "id field"),
        ({"key_fields": ("id", "orderNumber")}, "key fields"),
        ({"query": {"newErrors": "true"}}, "['failedOrderIds'] not sent"),
        ({"has_validate": False}, "has_validate"),
    ],
)
def test_a_wrong_orders_entry_is_caught(change: dict[str, object], needle: str) -> None:
    wrong = dataclasses.replace(RESOURCES["orders"], **change)  # type: ignore[arg-type]
    assert any(needle in problem for problem in disagreements(wrong)), disagreements(wrong)


@pytest.mark.parametrize(
    ("name", "change", "needle"),
    [
        ("cogs", {"json_wrapper": None}, "upload envelope 'array'"),
        ("logistics-costs", {"status_path": "/logistics-costs/state"}, "status path"),
        ("transaction-costs", {"has_validate": True, "validate_codes": frozenset({201})}, "has_validate"),
        ("refunds", {"query": {"failedOrderIds": "true", "newErrors": "true"}}, "['failedOrderIds']"),
        ("cogs", {"key_fields": ("orderId",)}, "key fields"),
    ],
)
def test_a_wrong_entry_of_another_resource_is_caught(
    name: str, change: dict[str, object], needle: str
) -> None:
    wrong = dataclasses.replace(RESOURCES[name], **change)  # type: ignore[arg-type]
    assert any(needle in problem for problem in disagreements(wrong)), disagreements(wrong)


def test_a_wrong_path_is_caught() -> None:
    row = RESOURCES["refunds"]
    wrong = _WrongPath(**{f.name: getattr(row, f.name) for f in dataclasses.fields(row)})
    assert any("path /12.2022/refunds/upload" in p for p in disagreements(wrong)), disagreements(wrong)


def test_an_unknown_resource_is_caught() -> None:
    wrong = dataclasses.replace(RESOURCES["orders"], name="order")
    assert disagreements(wrong) == ["order: Klar has no such resource"]
    with pytest.raises(KeyError, match="has no resource 'order'; it has: cogs"):
        get_contract("order")


def test_the_sandbox_imports_nothing_of_the_provider_but_the_models() -> None:
    # Sharing the table would make every end-to-end test agree with it by construction.
    allowed = ("airflow_provider_klar.sandbox", "airflow_provider_klar.models")
    offenders = []
    for path in sorted(SANDBOX.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("airflow_provider_klar") and not name.startswith(allowed):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
