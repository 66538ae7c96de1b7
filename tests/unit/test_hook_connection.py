"""The ``klar`` connection: base URL rules, token, extras, version resolution through the hook."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_klar.exceptions import KlarConfigurationError
from airflow_provider_klar.hooks._connection import build_base_url, is_loopback, settings_from_connection
from airflow_provider_klar.hooks.klar import KlarHook


def _conn(**fields: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "conn_id": "klar_x",
        "host": None,
        "schema": None,
        "port": None,
        "password": "t0k",
    }
    extra = fields.pop("extra", {})
    base.update(fields)
    return SimpleNamespace(**base, extra_dejson=extra)


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = "klar_default", **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "klar", **fields}))


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        (None, None, None, "https://open-api.getklar.com"),
        ("", None, None, "https://open-api.getklar.com"),
        ("open-api.getklar.com", None, None, "https://open-api.getklar.com"),
        ("https://open-api.getklar.com/", None, None, "https://open-api.getklar.com"),
        ("https://klar.example:8443", None, None, "https://klar.example:8443"),
        ("klar.example", None, 8443, "https://klar.example:8443"),
        # Port shown in the form (Airflow 3's Test button needs it): the same port twice is fine, the
        # scheme's default is left out, and 0 (an emptied Port field) means none.
        ("https://klar.example:9000", None, 9000, "https://klar.example:9000"),
        ("https://open-api.getklar.com", None, 443, "https://open-api.getklar.com"),
        ("open-api.getklar.com", None, 443, "https://open-api.getklar.com"),
        ("https://open-api.getklar.com:443/", None, None, "https://open-api.getklar.com"),
        ("http://127.0.0.1:8765", None, 8765, "http://127.0.0.1:8765"),
        ("http://127.0.0.1", None, 8765, "http://127.0.0.1:8765"),
        ("http://localhost", None, 80, "http://localhost"),
        ("https://klar.example", None, 0, "https://klar.example"),
        ("https://klar.example", None, "8443", "https://klar.example:8443"),
        ("https://proxy.example/klar/", None, None, "https://proxy.example/klar"),
        # Airflow's URI parsing puts the scheme in ``schema``: klar://:tok@127.0.0.1:8080/http
        ("127.0.0.1", "http", 8080, "http://127.0.0.1:8080"),
        ("klar.example", "https", None, "https://klar.example"),
        ("klar.example", "ignored-db-name", None, "https://klar.example"),
        ("http://localhost:5000", None, None, "http://localhost:5000"),
        ("http://127.8.9.10", None, None, "http://127.8.9.10"),
        ("http://[::1]:8080", None, None, "http://[::1]:8080"),
    ],
)
def test_base_url(host: str | None, schema: str | None, port: int | str | None, expected: str) -> None:
    assert build_base_url("klar_x", host, schema, port) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "port", "message"),
    [
        (
            "https://klar.example:9000",
            8443,
            "The host of connection 'klar_x' names port 9000 but its Port field says 8443: make them "
            "agree, or empty the Port field.",
        ),
        (
            "klar.example",
            "https",
            "The port of connection 'klar_x' must be a number such as 443; got 'https'.",
        ),
        ("klar.example", 70000, "The port of connection 'klar_x' must be 1 to 65535; got 70000."),
    ],
)
def test_a_port_that_contradicts_the_host_or_is_not_a_port_is_refused(
    host: str, port: Any, message: str
) -> None:
    with pytest.raises(KlarConfigurationError) as caught:
        build_base_url("klar_x", host, None, port)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "host",
    ["http://open-api.getklar.com", "http://10.0.0.1:8080", "http://128.0.0.1", "http://localhost.evil.com"],
)
def test_plain_http_is_refused_unless_loopback(host: str) -> None:
    with pytest.raises(KlarConfigurationError, match=r"plain http:// .*klar_x|klar_x.*plain http://"):
        build_base_url("klar_x", host, None, None)


def test_plain_http_from_schema_is_refused_for_remote_hosts() -> None:
    with pytest.raises(KlarConfigurationError, match="unencrypted"):
        build_base_url("klar_x", "open-api.getklar.com", "http", None)


@pytest.mark.parametrize(
    "host", ["ftp://klar.example", "https://user:pw@klar.example", "https://klar.example/?a=1", "https://:80"]
)
def test_malformed_hosts_are_refused(host: str) -> None:
    with pytest.raises(KlarConfigurationError, match="klar_x"):
        build_base_url("klar_x", host, None, None)


@pytest.mark.parametrize(
    ("name", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True), ("[::1]", True),
     ("10.0.0.1", False), ("getklar.com", False), ("::2", False)],
)  # fmt: skip
def test_is_loopback(name: str, loopback: bool) -> None:
    assert is_loopback(name) is loopback


@pytest.mark.parametrize("password", [None, "", "   "])
def test_missing_token_names_the_connection(password: str | None) -> None:
    with pytest.raises(KlarConfigurationError, match="'klar_x' has no API token"):
        settings_from_connection(_conn(password=password))


def test_token_is_trimmed_and_a_pasted_bearer_prefix_dropped() -> None:
    assert settings_from_connection(_conn(password=" Bearer abc.def \n")).token == "abc.def"


def test_settings_repr_hides_the_token() -> None:
    settings = settings_from_connection(_conn(password="very-secret-token"))
    assert "very-secret-token" not in repr(settings)


def test_extras_plain_and_airflow2_prefixed() -> None:
    settings = settings_from_connection(_conn(extra={"api_version": "12.2022", "timeout": "30"}))
    assert (settings.api_version, settings.timeout) == ("12.2022", 30.0)
    settings = settings_from_connection(
        _conn(extra={"extra__klar__api_version": "12.2022", "extra__klar__timeout": 5})
    )
    assert (settings.api_version, settings.timeout) == ("12.2022", 5.0)
    settings = settings_from_connection(_conn(extra={"api_version": {"orders": "12.2022"}}))
    assert settings.api_version == {"orders": "12.2022"}
    assert settings_from_connection(_conn(extra={"api_version": "", "timeout": ""})).timeout is None


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"api_version": 2025}, "api_version"),
        ({"api_version": ["07.2025"]}, "api_version"),
        ({"envelope": "list"}, r'extra.envelope of connection \'klar_x\' must be "array" .* got \'list\''),
        ({"envelope": {"invoices": "array"}}, "names 'invoices', which is not a Klar resource"),
        ({"envelope": {"cogs": None}}, "extra.envelope.cogs of connection"),
        ({"envelope": ["array"]}, r'or an object naming one per resource such as \{"cogs": "array"\}'),
    ],
)
def test_bad_extras_are_configuration_errors(extra: dict[str, Any], match: str) -> None:
    with pytest.raises(KlarConfigurationError, match=match):
        settings_from_connection(_conn(extra=extra))


def test_the_envelope_extra_one_word_for_the_cost_resources_or_per_resource() -> None:
    costs = {"cogs": "array", "logistics-costs": "array", "transaction-costs": "array"}
    assert settings_from_connection(_conn(extra={"envelope": " Array "})).envelope == costs
    pinned = settings_from_connection(_conn(extra={"envelope": {"cogs": "items", "orders": "array"}}))
    assert pinned.envelope == {"cogs": "items", "orders": "array"}
    assert settings_from_connection(_conn()).envelope == {}
    assert (
        settings_from_connection(_conn(extra={"extra__klar__envelope": "items"})).envelope["cogs"] == "items"
    )


def test_hook_reads_the_connection_lazily_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = KlarHook()  # no connection exists yet: the constructor must not read it
    _set_conn(monkeypatch, host="https://klar.example:8443/", password="abc")
    assert hook.base_url == "https://klar.example:8443"


def test_hook_refuses_remote_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, "klar_plain", host="http://open-api.getklar.com", password="abc")
    with pytest.raises(KlarConfigurationError, match="klar_plain"):
        KlarHook("klar_plain").get_conn()


def test_hook_without_token(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, "klar_notoken", host="https://klar.example")
    with pytest.raises(KlarConfigurationError, match="'klar_notoken' has no API token"):
        KlarHook("klar_notoken").get_status("orders")


def test_version_resolution_argument_then_extra_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, password="abc", extra={"api_version": {"orders": "12.2022"}})
    hook = KlarHook()
    assert hook.api_version_for("orders") == "12.2022"  # from the connection
    assert hook.api_version_for("logistics-costs") == "04.2024"  # resource default
    assert KlarHook(api_version="06.2026").api_version_for("orders") == "06.2026"  # argument wins

    _set_conn(monkeypatch, password="abc", extra={"api_version": "12.2022"})
    assert KlarHook().api_version_for("refunds") == "12.2022"
    _set_conn(monkeypatch, password="abc")
    assert KlarHook().api_version_for("orders") == "07.2025"


def test_bad_version_or_resource_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, password="abc")
    with pytest.raises(KlarConfigurationError, match=r"MM\.YYYY"):
        KlarHook(api_version="2025-07").api_version_for("orders")
    with pytest.raises(KlarConfigurationError, match="Unknown Klar resource 'order'"):
        KlarHook().api_version_for("order")


def test_hook_rejects_a_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        KlarHook(timeout=0)


def test_timeouts_argument_then_extra_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, password="abc", extra={"timeout": 30})
    client = KlarHook().get_conn()
    assert (client.timeout.connect, client.timeout.read) == (10.0, 30.0)
    assert KlarHook(timeout=7).get_conn().timeout.read == 7.0
    _set_conn(monkeypatch, password="abc")
    assert KlarHook().get_conn().timeout.read == 120.0


def test_the_forms_version_fills_in_what_extras_api_version_does_not_name() -> None:
    # Airflow 2.11's form keeps its field apart from a per-resource object typed into Extra.
    settings = settings_from_connection(
        _conn(extra={"api_version": {"orders": "12.2022"}, "default_api_version": "07.2025"})
    )
    assert isinstance(settings.api_version, dict)
    assert settings.api_version["orders"] == "12.2022"
    assert settings.api_version["refunds"] == "07.2025"
    assert settings_from_connection(_conn(extra={"default_api_version": "12.2022"})).api_version == "12.2022"
    # One version in Extra wins over the form's for every resource.
    both = settings_from_connection(_conn(extra={"api_version": "12.2022", "default_api_version": "07.2025"}))
    assert both.api_version == "12.2022"
