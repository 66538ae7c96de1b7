from __future__ import annotations

import pytest

from airflow_provider_klar.resources import MAX_BATCH_SIZE, RESOURCES, get_resource, resolve_version


def test_every_documented_resource_has_a_row() -> None:
    assert set(RESOURCES) == {"orders", "refunds", "cogs", "logistics-costs", "transaction-costs"}
    assert MAX_BATCH_SIZE == 1000


@pytest.mark.parametrize(
    ("resource", "version", "mode", "path"),
    [
        ("orders", "07.2025", "upload", "/07.2025/orders/json"),
        ("orders", "12.2022", "validate", "/12.2022/orders/validate"),
        ("logistics-costs", "04.2024", "upload", "/04.2024/logistics-costs/json"),
    ],
)
def test_paths(resource: str, version: str, mode: str, path: str) -> None:
    assert get_resource(resource).path(version, mode) == path


def test_transaction_costs_has_no_validate_endpoint() -> None:
    assert not get_resource("transaction-costs").has_validate
    assert get_resource("orders").has_validate


def test_wrappers_follow_klars_examples() -> None:
    assert get_resource("orders").wrapper("upload") is None
    assert get_resource("refunds").wrapper("validate") is None
    assert get_resource("cogs").wrapper("upload") == "items"
    assert get_resource("logistics-costs").wrapper("validate") == "items"


def test_orders_ask_for_ids_and_flat_errors() -> None:
    assert dict(get_resource("orders").query) == {"failedOrderIds": "true", "newErrors": "true"}


def test_unknown_resource_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Unknown Klar resource 'order'.*orders, refunds"):
        get_resource("order")


def test_version_resolution_order() -> None:
    assert resolve_version("orders") == "07.2025"
    assert resolve_version("refunds") == "12.2022"
    assert resolve_version("orders", conn_default="12.2022") == "12.2022"
    assert resolve_version("orders", explicit="07.2025", conn_default="12.2022") == "07.2025"
    # A per-resource mapping in the connection applies only to the resources it names.
    assert resolve_version("orders", conn_default={"orders": "12.2022"}) == "12.2022"
    assert resolve_version("cogs", conn_default={"orders": "12.2022"}) == "12.2022"
    assert resolve_version("logistics-costs", conn_default={"orders": "12.2022"}) == "04.2024"


@pytest.mark.parametrize("bad", ["2025.07", "7.2025", "13.2025", "latest", "07-2025"])
def test_malformed_versions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"MM\.YYYY"):
        resolve_version("orders", explicit=bad)
