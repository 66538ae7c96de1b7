"""``hash_emails=True`` in a real DAG: Klar (the sandbox) receives hashes, never an address or the salt."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_klar.sandbox.fake_data import fake_orders
from tests.e2e._dags import run_upload, write_jsonl

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SALT = "store-7f3a9c1e-salt"


def expected_hash(email: str) -> str:
    # Klar's rule written out independently of the provider: SHA-1 over salt + trimmed, lower-cased address.
    return hashlib.sha1(SALT.encode() + email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def test_orders_from_a_json_lines_file_arrive_with_hashes_and_without_addresses(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    connection = {**klar_sandbox.connection(), "extra": {"email_hash_secret": SALT}}
    monkeypatch.setenv("AIRFLOW_CONN_KLAR_DEFAULT", json.dumps(connection))
    orders: list[Any] = list(fake_orders(60))
    emails = {}
    for i, order in enumerate(orders):
        order["customer"]["email"] = f"  Customer.{i}@Example.COM "
        order["customer"].pop("emailHash", None)
        emails[order["id"]] = order["customer"]["email"]
    del orders[5]["customer"]["email"]  # a guest without an address: sent as it is
    orders[9]["cancelledAt"] = 0  # rejected locally: its rejected-file entry must not show the address
    source = write_jsonl(tmp_path / "orders.jsonl", orders)
    rejected = tmp_path / "rejected.jsonl"

    dag_run = run_upload(
        "klar_e2e_hash_emails",
        store_dag,
        path=str(source),
        hash_emails=True,
        max_rejected=1,
        rejected_path=str(rejected),
        checkpoint=None,
    )

    assert dag_run.state == "success"
    assert klar_sandbox.count("orders") == 59
    for order in orders:
        stored = klar_sandbox.get("orders", order["id"])
        if order["id"] == "ORD-9":
            assert stored is None
            continue
        assert stored is not None
        assert "email" not in stored["customer"]
        if order["id"] == "ORD-5":
            assert "emailHash" not in stored["customer"]
        else:
            assert stored["customer"]["emailHash"] == expected_hash(emails[order["id"]])
        # Everything else arrives as it was.
        assert {k: v for k, v in stored.items() if k != "customer"} == {
            k: v for k, v in order.items() if k != "customer"
        }
    (entry,) = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert entry["id"] == "ORD-9"
    assert entry["record"]["customer"]["emailHash"] == expected_hash(emails["ORD-9"])
    assert "Example.COM" not in rejected.read_text()
    out = capfd.readouterr().out
    assert "Sending customer.emailHash instead of customer.email (hash_emails=True)." in out
    assert SALT not in out
    assert "Example.COM" not in json.dumps(klar_sandbox.requests())


def test_without_a_salt_the_task_fails_before_sending_anything(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dag_run = run_upload(
        "klar_e2e_hash_emails_no_salt",
        store_dag,
        records=list(fake_orders(3)),
        hash_emails=True,
        retries=2,
    )

    assert dag_run.state == "failed"
    assert klar_sandbox.requests() == []
    out = capfd.readouterr().out
    assert "fill in its 'E-mail hash salt' field (Extra key 'email_hash_secret')" in out
    ti = dag_run.get_task_instance("upload")
    assert ti is not None
    assert ti.try_number == 1  # a configuration error: no retries
