"""Provider registration: the metadata matches Airflow's schema, names real classes, and Airflow sees it."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest

from airflow_provider_klar import __version__
from airflow_provider_klar.get_provider_info import get_provider_info
from airflow_provider_klar.hooks.klar import KlarHook

AIRFLOW_DIR = Path(airflow.__file__).parent


def _klar_connection_type() -> dict[str, Any]:
    (conn_type,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "klar"]
    return conn_type


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-klar"
    assert info["versions"] == [__version__]


def test_connection_form_matches_the_stricter_provider_yaml_schema() -> None:
    # provider_info.schema.json does not describe conn-fields; provider.yaml.schema.json does, strictly.
    yaml_schema = json.loads((AIRFLOW_DIR / "provider.yaml.schema.json").read_text())
    jsonschema.validate(
        get_provider_info()["connection-types"], yaml_schema["properties"]["connection-types"]
    )


def test_every_named_class_and_module_imports() -> None:
    info = get_provider_info()
    integrations = {i["integration-name"] for i in info["integrations"]}
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            assert entry["integration-name"] in integrations
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for conn_type in info["connection-types"]:
        hook = _import(conn_type["hook-class-name"])
        assert hook.conn_type == conn_type["connection-type"]
    for link in info.get("extra-links", []):
        assert isinstance(_import(link), type)
    assert _import(_klar_connection_type()["hook-class-name"]) is KlarHook


def test_hook_form_methods_say_what_provider_info_says() -> None:
    declared = _klar_connection_type()["ui-field-behaviour"]
    behaviour = KlarHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == declared["hidden-fields"]
    assert behaviour["relabeling"] == declared["relabeling"] == {"host": "Base URL", "password": "API token"}
    assert behaviour["placeholders"] == declared["placeholders"]
    assert set(declared["placeholders"]) >= {"host", "password", "default_api_version", "timeout"}
    assert {"schema", "login"} <= set(declared["hidden-fields"])
    assert "password" not in declared["hidden-fields"]
    assert "host" not in declared["hidden-fields"]
    # Airflow 3's Test button needs a stored port (it sends 0 for an empty one): the form shows Port.
    assert "port" not in declared["hidden-fields"]
    assert "Test button" in declared["placeholders"]["port"]


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


class _Field:
    def __init__(self, label: str, **kwargs: Any) -> None:
        self.label = label
        self.kwargs = kwargs


def test_airflow2_widgets_cover_the_declared_conn_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow 2.11 to 3.1 call get_connection_form_widgets() in the web server, which has wtforms and
    # flask-appbuilder; this environment (Airflow 3.3) does not, so stand-ins record what the hook builds.
    try:
        import wtforms  # noqa: F401
    except ImportError:
        _fake_module(monkeypatch, "flask_appbuilder")
        _fake_module(
            monkeypatch,
            "flask_appbuilder.fieldwidgets",
            BS3TextFieldWidget=lambda: "widget",
            BS3PasswordFieldWidget=lambda: "password widget",
        )
        _fake_module(monkeypatch, "flask_babel", lazy_gettext=str)
        string_field = type("StringField", (_Field,), {})
        integer_field = type("IntegerField", (_Field,), {})
        password_field = type("PasswordField", (_Field,), {})
        _fake_module(
            monkeypatch,
            "wtforms",
            StringField=string_field,
            IntegerField=integer_field,
            PasswordField=password_field,
        )
        _fake_module(
            monkeypatch,
            "wtforms.validators",
            NumberRange=lambda **kw: ("NumberRange", kw),
            Optional=lambda: "Optional",
            Regexp=lambda *a, **kw: ("Regexp", a),
        )
    widgets = KlarHook.get_connection_form_widgets()
    fields = _klar_connection_type()["conn-fields"]
    assert set(widgets) == set(fields) == {"default_api_version", "timeout", "email_hash_secret"}
    assert _field_class(widgets["default_api_version"]) == "StringField"
    assert _field_class(widgets["timeout"]) == "IntegerField"
    # The salt is a secret: masked in both forms, and named so that Airflow hides it in Extra.
    assert _field_class(widgets["email_hash_secret"]) == "PasswordField"
    assert fields["email_hash_secret"]["schema"]["format"] == "password"


def test_airflows_providers_manager_sees_the_package_and_the_klar_connection() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-klar" in manager.providers
    assert manager.providers["airflow-provider-klar"].version == __version__
    try:  # Airflow >= 3.2 moved the hook registry to the task SDK; the old one warns
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        hooks = ProvidersManagerTaskRuntime().hooks
    except ImportError:
        hooks = manager.hooks
    hook_info = hooks["klar"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_klar.hooks.klar.KlarHook"
    assert hook_info.connection_id_attribute_name == "klar_conn_id"
    assert hook_info.hook_name == "Klar"
    behaviour = manager.field_behaviours["klar"]
    assert behaviour["relabeling"]["password"] == "API token"
    assert "extra__klar__default_api_version" in behaviour["placeholders"]
    widgets = manager.connection_form_widgets
    assert {"extra__klar__default_api_version", "extra__klar__timeout"} <= set(widgets)
    field = widgets["extra__klar__timeout"].field
    if isinstance(field, dict):  # Airflow 3: a JSON schema
        assert field["schema"]["title"] == "Read timeout (seconds)"
    else:  # Airflow 2.11: a wtforms field, unbound until a form holds it
        assert str(field.args[0]) == "Read timeout (seconds)"


def _field_class(widget: Any) -> str:
    # Real wtforms fields are UnboundFields outside a form; the stand-ins of the test are the class itself.
    return getattr(widget, "field_class", type(widget)).__name__
