"""The "Klar" extra link: the sandbox's own page for a local connection, Klar's app otherwise."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from airflow_provider_klar.links.klar import KLAR_APP_URL, KlarLink


def _link(monkeypatch: pytest.MonkeyPatch, conn: dict[str, object] | None, **task: object) -> str:
    if conn is not None:
        monkeypatch.setenv("AIRFLOW_CONN_KLAR_LINKED", json.dumps({"conn_type": "klar", **conn}))
    operator = SimpleNamespace(klar_conn_id="klar_linked", **task)
    return KlarLink().get_link(operator, ti_key=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conn", "resource", "expected"),
    [
        (
            {"host": "http://127.0.0.1:8765", "password": "t"},
            "orders",
            "http://127.0.0.1:8765/_sandbox/records/orders",
        ),
        (
            {"host": "http://localhost", "port": 9000},
            "logistics-costs",
            "http://localhost:9000/_sandbox/records/logistics-costs",
        ),
        ({"host": "http://[::1]:8765/base/"}, "refunds", "http://[::1]:8765/base/_sandbox/records/refunds"),
        # A resource still holding its template (or none at all): the sandbox's API docs.
        ({"host": "http://127.0.0.1:8765"}, "{{ params.resource }}", "http://127.0.0.1:8765/docs"),
        ({"host": "http://127.0.0.1:8765"}, None, "http://127.0.0.1:8765/docs"),
        ({"host": "https://open-api.getklar.com", "password": "t"}, "orders", KLAR_APP_URL),
        ({"host": "", "password": "t"}, "orders", KLAR_APP_URL),
        ({"host": "https://klar-proxy.example.com/klar"}, "orders", KLAR_APP_URL),
        # A connection the hook would refuse still gets a link, never an error.
        ({"host": "ftp://127.0.0.1"}, "orders", KLAR_APP_URL),
        (None, "orders", KLAR_APP_URL),  # no such connection
    ],
)
def test_the_link_follows_the_connection(
    monkeypatch: pytest.MonkeyPatch, conn: dict[str, object] | None, resource: str | None, expected: str
) -> None:
    assert _link(monkeypatch, conn, resource=resource) == expected


def test_the_link_never_shows_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    link = _link(
        monkeypatch, {"host": "http://127.0.0.1:8765", "password": "s3cret-token"}, resource="orders"
    )
    assert "s3cret-token" not in link
