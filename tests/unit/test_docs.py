"""The documentation says what the code does: its JSON examples validate as the text claims, every
exception class has a troubleshooting entry, and every included file exists."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_klar import exceptions
from airflow_provider_klar.models import RecordValidator

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.DOTALL)


def pricing_examples() -> list[Any]:
    blocks = JSON_BLOCK.findall((DOCS / "pricing.md").read_text())
    # The shipping example is a fragment ("shipping": {...}); wrap it into an object.
    return [json.loads(block if block.lstrip().startswith("{") else "{" + block + "}") for block in blocks]


def as_order(example: dict[str, Any], index: int) -> dict[str, Any]:
    """Wrap a line item or a shipping fragment into a minimal order."""
    if "shipping" in example:
        return {"id": f"DOC-{index}", **example}
    return {"id": f"DOC-{index}", "lineItems": [{"id": f"LI-{index}", **example}]}


def test_pricing_examples_validate_as_the_page_says() -> None:
    examples = pricing_examples()
    assert len(examples) == 6
    good_line, wrong_line, voucher_line, shipping, bundle, refund = examples
    orders = RecordValidator("orders", "07.2025")
    for index, example in enumerate((good_line, voucher_line, shipping, bundle)):
        result = orders.validate(as_order(example, index))
        assert result.valid, (example, result.errors)
        # Worked examples are consistent: not even a pitfall warning.
        assert result.warnings == (), result.warnings

    wrong = orders.validate(as_order(wrong_line, 9))
    assert [e.path for e in wrong.errors] == ["lineItems.0.taxes.0.taxRate"]
    assert "looks like a percentage, send 0.19" in wrong.errors[0].message

    assert RecordValidator("refunds", "12.2022").validate(refund).valid
    # Bundles need 07.2025: the page says 12.2022 names the version to use.
    old = RecordValidator("orders", "12.2022").validate(as_order(bundle, 5))
    assert any("07.2025" in e.message for e in old.errors)


def test_pricing_csv_example_is_valid_logistics_costs() -> None:
    text = (DOCS / "pricing.md").read_text()
    rows = re.search(r"```csv\n(.*?)```", text, re.DOTALL)
    assert rows is not None
    header, *lines = rows.group(1).strip().splitlines()
    validator = RecordValidator("logistics-costs", "04.2024")
    for line in lines:
        order_id, amount = line.split(",")
        assert header == "orderId,totalLogisticsCosts"
        assert validator.validate({"orderId": order_id, "totalLogisticsCosts": float(amount)}).valid


def exception_classes() -> list[str]:
    tree = ast.parse(Path(exceptions.__file__).read_text())
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]


@pytest.mark.parametrize("name", exception_classes())
def test_every_exception_class_has_a_troubleshooting_entry(name: str) -> None:
    assert f"`{name}`" in (DOCS / "troubleshooting.md").read_text()


def test_snippet_includes_point_at_files() -> None:
    included = set()
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r'--8<-- "([^"]+)"', page.read_text()):
            path = target.split(":", 1)[0]
            assert (REPO / path).is_file(), f"{page.name} includes missing {path}"
            included.add(path)
    # Every example DAG is shown somewhere in the docs.
    dags = {f"example_dags/{p.name}" for p in (REPO / "example_dags").glob("*.py")}
    assert dags <= included


def load_docs_module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("resource", "version"),
    [("orders", "07.2025"), ("refunds", "12.2022"), ("cogs", "12.2022"), ("logistics-costs", "04.2024")],
)
def test_schema_tables_list_every_field_of_every_object(resource: str, version: str) -> None:
    from airflow_provider_klar.models import json_schema

    hooks = load_docs_module("hooks")
    markdown = hooks.on_page_markdown(f"before\n<!-- klar-schema: {resource} {version} -->\nafter")
    assert "klar-schema" not in markdown
    schema = json_schema(resource, version)
    for definition in [schema, *schema.get("$defs", {}).values()]:
        for field in definition.get("properties", {}):
            assert f"| `{field}` |" in markdown, (resource, field)


def test_models_page_renders_every_resource() -> None:
    from airflow_provider_klar.resources import RESOURCES

    page = (DOCS / "models.md").read_text()
    rendered = {line.split()[2] for line in page.splitlines() if line.startswith("<!-- klar-schema:")}
    assert rendered == set(RESOURCES)


def test_docstring_roles_become_markdown() -> None:
    pytest.importorskip(
        "griffe", reason="the docs toolchain is installed with the Airflow 3 environment only"
    )
    rewrite = load_docs_module("griffe_sphinx_roles").rewrite
    assert rewrite("See :class:`~airflow_provider_klar.results.KlarStatus`.") == "See `KlarStatus`."
    assert rewrite(":meth:`KlarHook.upload` and ``x``") == "`KlarHook.upload` and `x`"
    assert rewrite("Usage::\n\n    run()\n\nDone.") == "Usage:\n\n```python\nrun()\n```\n\nDone."


def test_models_page_python_examples_run_as_shown() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "models.md").read_text(), re.DOTALL)
    assert len(blocks) == 3
    build, validate = ({} for _ in range(2))
    exec(blocks[0], build)  # the page's own code, unchanged
    dumped = build["order"].model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped["lineItems"][0]["taxes"][0] == {"title": "VAT", "taxRate": 0.19, "taxAmount": 3.8}
    exec(blocks[1], validate)
    assert validate["result"].valid is False
    assert [str(e) for e in validate["result"].errors] == [
        "lineItems.0.taxes.0.taxRate: 19 looks like a percentage, send 0.19"
    ]
    # The validate_json example continues the validate one, each line's comment saying what it gives.
    for line in blocks[2].strip().splitlines():
        code, _, shown = line.partition("  # ")
        expected = shown.split(":")[0]
        assert repr(eval(code, validate)) == expected, line


def test_operator_page_lists_every_argument_with_its_default() -> None:
    import inspect

    from airflow_provider_klar.operators.klar import KlarUploadOperator

    text = (DOCS / "operator.md").read_text()
    table = text[text.index("## Arguments") :]
    documented: dict[str, str] = {}
    for names, default in re.findall(r"^\| (`[^|]+`) \|([^|]*)\|", table, re.MULTILINE):
        for name in re.findall(r"`(\w+)`", names):
            documented[name] = default.strip()
    parameters = inspect.signature(KlarUploadOperator.__init__).parameters
    expected = {name for name in parameters if name not in ("self", "kwargs", "map_index_template")}
    assert set(documented) == expected
    for name, default in documented.items():
        literal = re.fullmatch(r"`(.+)`", default)
        if literal:
            assert literal.group(1) == repr(parameters[name].default).replace("'", '"'), name
