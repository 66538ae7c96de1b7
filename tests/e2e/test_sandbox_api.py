"""End-to-end tests of the sandbox's Klar contract over real loopback HTTP (``klar_sandbox`` fixture)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from airflow_provider_klar.sandbox import SandboxClient, SandboxServer
from airflow_provider_klar.sandbox.contract import CONTRACT, MAX_OBJECTS
from airflow_provider_klar.sandbox.fake_data import fake_orders, fake_records

pytestmark = pytest.mark.e2e

ROUTES = [
    (row.name, version, mode) for row in CONTRACT.values() for version in row.versions for mode in row.modes
]
EXPECTED = {
    ("orders", "upload"): (201, {"status": "VALID"}),
    ("orders", "validate"): (201, {"status": "VALID"}),
    ("refunds", "upload"): (201, None),
    ("refunds", "validate"): (200, {"status": "VALID"}),
    ("cogs", "upload"): (201, None),
    ("cogs", "validate"): (202, {"status": "VALID"}),
    ("logistics-costs", "upload"): (201, None),
    ("logistics-costs", "validate"): (202, {"status": "VALID"}),
    ("transaction-costs", "upload"): (201, {"status": "VALID"}),
}


@pytest.fixture
def http(klar_sandbox: SandboxServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {klar_sandbox.token}"}
    with httpx.Client(base_url=klar_sandbox.url, headers=headers, timeout=30) as client:
        yield client


def _records(resource: str, version: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    if resource == "orders":
        return list(fake_orders(n, version=version, start=start))
    return list(fake_records(resource, n, start=start))


def _body(resource: str, records: list[Any]) -> Any:
    return records if CONTRACT[resource].envelope == "array" else {"items": records}


def _orders_with_one_bad(n: int = 3, bad: int = 1) -> list[dict[str, Any]]:
    orders = _records("orders", "07.2025", n)
    orders[bad]["createdAt"] = "yesterday"
    return orders


@pytest.mark.parametrize(("resource", "version", "mode"), ROUTES)
def test_each_resource_version_and_mode(
    http: httpx.Client, klar_sandbox: SandboxServer, resource: str, version: str, mode: str
) -> None:
    records = _records(resource, version, 3)
    response = http.post(CONTRACT[resource].path(version, mode), json=_body(resource, records))
    code, body = EXPECTED[(resource, mode)]
    assert response.status_code == code, response.text
    if body is None:
        assert response.content == b""
    else:
        assert response.json() == body
    id_field = CONTRACT[resource].id_field
    if mode == "upload":
        assert klar_sandbox.count(resource) == 3
        assert klar_sandbox.get(resource, records[0][id_field]) == records[0]
    else:
        assert klar_sandbox.count(resource) == 0
    (entry,) = klar_sandbox.requests()
    assert (entry["path"], entry["records"], entry["status"]) == (
        CONTRACT[resource].path(version, mode),
        3,
        code,
    )


def test_transaction_costs_has_no_validate_and_unknown_versions_are_404(http: httpx.Client) -> None:
    for path in ("/06.2024/transaction-costs/validate", "/01.2030/orders/json", "/07.2025/invoices/json"):
        response = http.post(path, json={"items": []})
        assert response.status_code == 404
        assert response.json()["message"] == f"Cannot POST {path}"
    assert http.get("/07.2025/orders/json").status_code == 404


@pytest.mark.parametrize("resource", list(CONTRACT))
def test_wrong_wrapper_is_400_naming_the_expected_shape(
    http: httpx.Client, klar_sandbox: SandboxServer, resource: str
) -> None:
    row = CONTRACT[resource]
    records = _records(resource, row.newest_version, 2)
    wrong = {"items": records} if row.envelope == "array" else records
    response = http.post(row.path(row.newest_version, "upload"), json=wrong)
    assert response.status_code == 400
    message = response.json()["message"]
    assert ("JSON array" in message) if row.envelope == "array" else ('{"items": [...]}' in message)
    assert klar_sandbox.count(resource) == 0
    assert klar_sandbox.status(resource)["lastFailure"] is not None


def test_207_stores_only_the_valid_orders(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    orders = _orders_with_one_bad()
    response = http.post(
        "/07.2025/orders/json", params={"failedOrderIds": "true", "newErrors": "true"}, json=orders
    )
    assert response.status_code == 207
    body = response.json()
    assert body["status"] == "PARTIALLY_VALID"
    assert body["failedOrderIds"] == ["ORD-1"]
    assert body["successfulOrderIds"] == ["ORD-0", "ORD-2"]
    (error,) = body["errors"]
    assert (error["id"], error["key"], error["value"]) == ("ORD-1", "1.createdAt", "yesterday")
    assert error["message"].startswith("createdAt ")
    assert klar_sandbox.count("orders") == 2
    assert klar_sandbox.get("orders", "ORD-1") is None
    status = http.get("/orders/status").json()
    assert (status["total"], status["lastBatchCount"]) == ("2", "2")
    assert status["lastSuccess"] is not None
    assert status["lastFailure"] is None


def test_all_invalid_with_failed_order_ids_is_400_with_ids(
    http: httpx.Client, klar_sandbox: SandboxServer
) -> None:
    orders = _orders_with_one_bad(1, 0)
    response = http.post(
        "/07.2025/orders/json", params={"failedOrderIds": "true", "newErrors": "true"}, json=orders
    )
    assert response.status_code == 400
    assert response.json()["failedOrderIds"] == ["ORD-0"]
    assert response.json()["errors"][0]["key"] == "0.createdAt"
    assert klar_sandbox.count("orders") == 0


def test_new_errors_is_flat_and_stores_nothing(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    response = http.post("/07.2025/orders/json", params={"newErrors": "true"}, json=_orders_with_one_bad())
    assert response.status_code == 400
    assert response.json() == {
        "status": "INVALID",
        "errors": [
            {
                "id": "ORD-1",
                "key": "1.createdAt",
                "message": response.json()["errors"][0]["message"],
                "value": "yesterday",
            }
        ],
    }
    assert klar_sandbox.count("orders") == 0
    assert klar_sandbox.status("orders")["lastFailure"] is not None


def test_failed_order_ids_alone_gives_string_errors(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    response = http.post(
        "/07.2025/orders/validate", params={"failedOrderIds": "true"}, json=_orders_with_one_bad()
    )
    assert response.status_code == 400
    body = response.json()
    assert body["orderIds"] == ["ORD-1"]
    (line,) = body["errors"]
    assert line.startswith("orders.1.createdAt: (yesterday) ")


def test_no_flag_gives_the_class_validator_array(http: httpx.Client) -> None:
    orders = _records("orders", "07.2025", 2)
    orders[1]["lineItems"][0]["taxes"] = [{"title": "VAT", "taxRate": "19%", "taxAmount": 1.0}]
    response = http.post("/07.2025/orders/json", json=orders)
    assert response.status_code == 400
    (node,) = response.json()
    assert node["property"] == "1"
    path, leaf = [], node
    while leaf["children"]:
        leaf = leaf["children"][0]
        path.append(leaf["property"])
    assert path == ["lineItems", "0", "taxes", "0", "taxRate"]
    assert leaf["value"] == "19%"
    assert leaf["target"]["title"] == "VAT"
    assert next(iter(leaf["constraints"].values())).startswith("taxRate ")


def test_upsert_by_id_and_by_cost_key(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    orders = _records("orders", "07.2025", 2)
    assert http.post("/07.2025/orders/json", json=orders).status_code == 201
    orders[0]["financialStatus"] = "cancelled"
    assert http.post("/07.2025/orders/json", json=orders[:1]).status_code == 201
    assert klar_sandbox.count("orders") == 2
    assert klar_sandbox.get("orders", "ORD-0")["financialStatus"] == "cancelled"
    assert klar_sandbox.status("orders")["total"] == "3"  # Klar counts submissions, re-sends included

    cogs = [
        {"orderId": "ORD-9", "lineItemId": "L1", "productCogs": 1.0},
        {"orderId": "ORD-9", "lineItemId": "L2", "productCogs": 2.0},
    ]
    assert http.post("/12.2022/cogs/json", json={"items": cogs}).status_code == 201
    cogs[1]["productCogs"] = 3.0
    assert http.post("/12.2022/cogs/json", json={"items": cogs[1:]}).status_code == 201
    assert klar_sandbox.count("cogs") == 2
    assert sorted(r["productCogs"] for r in klar_sandbox.records("cogs")) == [1.0, 3.0]


def test_status_counters_are_strings_with_iso_times(http: httpx.Client) -> None:
    assert http.get("/refunds/status").json() == {
        "total": "0",
        "lastBatchCount": "0",
        "lastSuccess": None,
        "lastFailure": None,
    }
    refunds = _records("refunds", "12.2022", 4)
    http.post("/12.2022/refunds/json", json=refunds)
    http.post("/12.2022/refunds/json", json=refunds[:1])
    http.post("/12.2022/refunds/validate", json=refunds)  # validate counts nothing
    http.post("/12.2022/refunds/json", json=[{"id": 5}])
    status = http.get("/refunds/status").json()
    assert (status["total"], status["lastBatchCount"]) == ("5", "1")
    for field in ("lastSuccess", "lastFailure"):
        assert status[field].endswith("Z")
        assert len(status[field].split(".")[1]) == 4  # milliseconds + Z
        datetime.fromisoformat(status[field].replace("Z", "+00:00"))
    assert status["lastFailure"] >= status["lastSuccess"]
    assert http.get("/logistics-costs/state").json()["total"] == "0"


def test_token_is_required(klar_sandbox: SandboxServer) -> None:
    body = _records("orders", "07.2025", 1)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {klar_sandbox.token}"}):
        response = httpx.post(f"{klar_sandbox.url}/07.2025/orders/json", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["statusCode"] == 401
        assert klar_sandbox.token not in response.text
        assert httpx.get(f"{klar_sandbox.url}/orders/status", headers=headers).status_code == 401
    assert klar_sandbox.count("orders") == 0
    assert [e["status"] for e in klar_sandbox.requests()] == [401, 401, 401]


def test_batch_limit(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    costs = [{"orderId": f"ORD-{i}", "totalLogisticsCosts": 1.5} for i in range(MAX_OBJECTS + 1)]
    assert http.post("/04.2024/logistics-costs/json", json={"items": costs[:MAX_OBJECTS]}).status_code == 201
    response = http.post("/04.2024/logistics-costs/json", json={"items": costs})
    assert response.status_code == 413
    assert "1001" in response.json()["message"]
    assert klar_sandbox.count("logistics-costs") == MAX_OBJECTS
    assert klar_sandbox.requests()[-1]["records"] == MAX_OBJECTS + 1


def test_transaction_costs_answer_flat_errors_by_default(http: httpx.Client) -> None:
    response = http.post(
        "/06.2024/transaction-costs/json", json={"items": [{"orderId": 1111, "transactionCosts": 1}]}
    )
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert (error["id"], error["key"], error["value"]) == (1111, "0.orderId", 1111)


def test_connection_env_var_and_client_accessors(http: httpx.Client, klar_sandbox: SandboxServer) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_KLAR_DEFAULT"])
    assert conn == {"conn_type": "klar", "host": klar_sandbox.url, "password": klar_sandbox.token}
    http.post("/07.2025/orders/json", json=_records("orders", "07.2025", 2))
    with SandboxClient(klar_sandbox.url, klar_sandbox.token) as client:
        client.wait_ready(timeout=5)
        assert client.count("orders") == 2
        assert client.counts()["orders"] == 2
        assert client.get("orders", "ORD-1") == klar_sandbox.get("orders", "ORD-1")
        assert client.get("orders", "nope") is None
        assert len(client.records("orders")) == 2
        assert client.status("orders")["total"] == "2"
        http.get("/orders/status")
        assert len(client.requests()) == 1
        assert len(client.requests(include_get=True)) == 2
        client.set_faults(fail_next=[503])
        with pytest.raises(ValueError, match="Unknown sandbox fault"):
            client.set_faults(bogus=1)
        assert http.get("/orders/status").status_code == 503
        client.reset()
        assert client.count("orders") == 0
        assert client.connection_uri() == klar_sandbox.connection_uri()


def test_openapi_documents_the_contract_with_model_schemas(http: httpx.Client) -> None:
    assert http.get("/docs").status_code == 200
    spec = http.get("/openapi.json").json()
    operation = spec["paths"]["/07.2025/orders/json"]["post"]
    assert "207" in operation["responses"]
    items = operation["requestBody"]["content"]["application/json"]["schema"]["items"]
    name = items["$ref"].rsplit("/", 1)[1]
    assert "lineItems" in spec["components"]["schemas"][name]["properties"]
    wrapped = spec["paths"]["/12.2022/cogs/json"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert wrapped["required"] == ["items"]
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(spec)))
    missing = refs - {f"#/components/schemas/{n}" for n in spec["components"]["schemas"]}
    assert not missing
    assert "/06.2024/transaction-costs/validate" not in spec["paths"]
