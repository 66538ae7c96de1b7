"""The provider's KlarHook against the sandbox, over loopback HTTP: the two sides agree on the contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_klar.exceptions import KlarAuthError
from airflow_provider_klar.results import OutcomeState
from airflow_provider_klar.sandbox import SandboxServer
from airflow_provider_klar.sandbox.fake_data import fake_orders, fake_records

pytestmark = pytest.mark.e2e


@pytest.fixture
def hook(klar_sandbox: SandboxServer) -> Iterator[Any]:
    from airflow_provider_klar.hooks.klar import KlarHook

    with KlarHook(max_wait=1.0) as klar_hook:
        yield klar_hook


def test_hook_uploads_and_reads_partial_results(hook: Any, klar_sandbox: SandboxServer) -> None:
    orders = list(fake_orders(4))
    orders[2]["createdAt"] = "yesterday"
    result = hook.upload("orders", orders)
    assert result.status_code == 207
    assert [o.state for o in result.outcomes] == [
        OutcomeState.ACCEPTED,
        OutcomeState.ACCEPTED,
        OutcomeState.REJECTED,
        OutcomeState.ACCEPTED,
    ]
    (error,) = result.outcomes[2].errors
    assert error.path == "createdAt"
    assert klar_sandbox.count("orders") == 3
    status = hook.get_status("orders")
    assert (status.total, status.last_batch_count, status.latest_failed) == (3, 3, False)


def test_hook_validate_400_marks_the_others_not_stored(hook: Any, klar_sandbox: SandboxServer) -> None:
    orders = list(fake_orders(3))
    orders[0]["lineItems"][0]["quantity"] = "2"
    result = hook.validate("orders", orders)
    assert result.status_code == 400
    assert [o.state for o in result.outcomes] == [
        OutcomeState.REJECTED,
        OutcomeState.NOT_STORED,
        OutcomeState.NOT_STORED,
    ]
    assert result.outcomes[0].errors[0].path == "lineItems.0.quantity"
    assert klar_sandbox.count("orders") == 0


@pytest.mark.parametrize("resource", ["refunds", "cogs", "logistics-costs", "transaction-costs"])
def test_hook_uploads_every_resource(hook: Any, klar_sandbox: SandboxServer, resource: str) -> None:
    records = list(fake_records(resource, 5))
    result = hook.upload(resource, records)
    assert result.accepted_count == 5
    assert klar_sandbox.count(resource) == 5
    assert hook.get_status(resource).total == 5


def test_hook_retries_injected_faults(hook: Any, klar_sandbox: SandboxServer) -> None:
    klar_sandbox.set_faults(fail_next=[429, 503, "drop"], retry_after=0)
    result = hook.upload("orders", list(fake_orders(2)))
    assert result.accepted_count == 2
    assert [e["status"] for e in klar_sandbox.requests()] == [429, 503, None, 201]


def test_hook_retries_a_lost_answer_and_upsert_keeps_one_copy(hook: Any, klar_sandbox: SandboxServer) -> None:
    klar_sandbox.set_faults(fail_next=["drop_after"])
    result = hook.upload("orders", list(fake_orders(3)))
    assert result.accepted_count == 3
    assert klar_sandbox.count("orders") == 3
    assert klar_sandbox.status("orders")["total"] == "6"  # Klar counted both submissions
    assert [e["status"] for e in klar_sandbox.requests()] == [None, 201]


def test_hook_with_a_wrong_token(klar_sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_klar.hooks.klar import KlarHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_KLAR_DEFAULT", klar_sandbox.connection_uri().replace("dev-token", "nope")
    )
    with KlarHook() as wrong, pytest.raises(KlarAuthError):
        wrong.upload("orders", list(fake_orders(1)))
    assert klar_sandbox.count("orders") == 0
