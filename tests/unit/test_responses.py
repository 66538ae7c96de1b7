"""Every answer shape of ``klar-api.md`` becomes one outcome per record sent, or a clear error."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_klar.exceptions import (
    KlarAuthError,
    KlarNotFoundError,
    KlarRequestError,
    KlarResponseError,
)
from airflow_provider_klar.hooks._errors import parse_error_string, split_key
from airflow_provider_klar.hooks._responses import Scrubber, batch_result_from_response, outcomes_for
from airflow_provider_klar.resources import get_resource
from airflow_provider_klar.results import FieldError, KlarBatchResult, OutcomeState

A, R, N = OutcomeState.ACCEPTED, OutcomeState.REJECTED, OutcomeState.NOT_STORED
LOG = logging.getLogger("test_responses")


def answer(
    status: int,
    body: Any = None,
    ids: list[str | None] | None = None,
    *,
    resource: str = "orders",
    mode: str = "upload",
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> KlarBatchResult:
    ids = ids if ids is not None else ["A", "B", "C"]
    row = get_resource(resource)
    request = httpx.Request("POST", f"https://klar.test{row.path(row.default_version, mode)}", content=b"[]")
    content = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    response = httpx.Response(status, content=content, request=request, headers=headers)
    return batch_result_from_response(
        response,
        resource=row,
        version=row.default_version,
        mode=mode,
        ids=ids,
        conn_id="klar_default",
        base_url="https://klar.test",
        scrub=Scrubber("s3cr3t-token"),
        log=LOG,
    )


def states(result: KlarBatchResult) -> list[OutcomeState]:
    return [o.state for o in result.outcomes]


# -- 1. success ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "resource", "mode"),
    [
        (201, {"status": "VALID"}, "orders", "upload"),
        (200, {"status": "VALID"}, "orders", "upload"),
        (201, {"status": "VALID"}, "orders", "validate"),
        (200, {"status": "VALID"}, "refunds", "validate"),
        (201, None, "refunds", "upload"),
        (202, {"status": "VALID"}, "cogs", "validate"),
        (201, None, "logistics-costs", "upload"),
        (201, {"status": "valid"}, "transaction-costs", "upload"),
    ],
)
def test_success_accepts_every_record(status: int, body: Any, resource: str, mode: str) -> None:
    result = answer(status, body, resource=resource, mode=mode)
    assert states(result) == [A, A, A]
    assert [o.id for o in result.outcomes] == ["A", "B", "C"]
    assert [o.index for o in result.outcomes] == [0, 1, 2]
    assert (result.resource, result.mode, result.status_code) == (resource, mode, status)


def test_whitespace_body_counts_as_empty() -> None:
    assert states(answer(201, raw=b"  \n")) == [A, A, A]


@pytest.mark.parametrize(
    "raw", [b'{"ok": true}', b"[]", b'"OK"', b'{"status": "DONE"}', b"OK", b"<html>hi</html>", b"{}", b"null"]
)
def test_a_success_code_with_an_unreadable_body_is_never_accepted(raw: bytes) -> None:
    with pytest.raises(KlarResponseError, match="cannot read as success") as raised:
        answer(201, raw=raw)
    assert raised.value.http_status == 201


# -- 2. partial success (207) -------------------------------------------------------------------


PARTIAL = {
    "status": "PARTIALLY_VALID",
    "errors": [{"id": "B", "key": "1.createdAt", "message": "createdAt must be a number", "value": "x"}],
    "failedOrderIds": ["B"],
    "successfulOrderIds": ["A", "C"],
}


def test_partial_success_names_each_rejected_record() -> None:
    result = answer(207, PARTIAL)
    assert states(result) == [A, R, A]
    rejected = result.rejected[0]
    assert (rejected.index, rejected.id) == (1, "B")
    assert rejected.errors == (FieldError("createdAt", "createdAt must be a number", "x"),)
    assert result.rejected_ids == ["B"]


def test_partial_with_failed_ids_only_stores_the_rest() -> None:
    result = answer(207, {"status": "PARTIALLY_VALID", "failedOrderIds": ["C"]})
    assert states(result) == [A, A, R]
    assert "without giving a reason" in result.outcomes[2].errors[0].message


def test_partial_record_missing_from_both_lists_is_not_stored() -> None:
    body = {"status": "PARTIALLY_VALID", "failedOrderIds": ["B"], "successfulOrderIds": ["A"]}
    assert states(answer(207, body)) == [A, R, N]


def test_partial_with_duplicate_ids_blames_the_copy_with_the_error() -> None:
    body = {
        "status": "PARTIALLY_VALID",
        "errors": [{"id": "X", "key": "2.createdAt", "message": "bad", "value": 0}],
        "failedOrderIds": ["X"],
        "successfulOrderIds": ["X", "Y"],
    }
    result = answer(207, body, ["X", "Y", "X"])
    assert states(result) == [A, A, R]


def test_partial_with_duplicate_failed_id_and_no_position_rejects_both_copies() -> None:
    body = {"status": "PARTIALLY_VALID", "failedOrderIds": ["X"], "successfulOrderIds": ["Y"]}
    assert states(answer(207, body, ["X", "Y", "X"])) == [R, A, R]


def test_partial_with_unplaced_reasons_rejects_what_was_not_confirmed() -> None:
    body = {"status": "PARTIALLY_VALID", "errors": ["something went wrong"], "successfulOrderIds": ["A"]}
    result = answer(207, body)
    assert states(result) == [A, R, R]
    assert result.outcomes[1].errors == (FieldError("", "something went wrong"),)


def test_partial_without_any_usable_detail_is_an_error() -> None:
    with pytest.raises(KlarResponseError, match="207"):
        answer(207, {"status": "PARTIALLY_VALID"})


def test_valid_status_with_failures_is_read_as_partial() -> None:
    assert states(answer(201, {"status": "VALID", "failedOrderIds": ["A"]})) == [R, A, A]


# -- 3. rejected, flat errors -------------------------------------------------------------------


def test_flat_errors_reject_their_records_and_the_rest_is_not_stored() -> None:
    body = {
        "status": "INVALID",
        "errors": [
            {"id": 1111, "key": "0.orderId", "message": "orderId must be a string", "value": 1111},
            {"id": 1111, "key": "0.transactionCosts", "message": "must be a number", "value": "1"},
        ],
    }
    result = answer(400, body, ["1111", "2222"], resource="transaction-costs")
    assert states(result) == [R, N]
    assert result.outcomes[0].errors == (
        FieldError("orderId", "orderId must be a string", 1111),
        FieldError("transactionCosts", "must be a number", "1"),
    )
    assert result.outcomes[1].errors == ()
    assert result.status_code == 400


def test_flat_error_paths_are_relative_to_the_record() -> None:
    body = {
        "status": "INVALID",
        "errors": [{"key": "2.lineItems.0.taxes.0.taxRate", "message": "m", "value": 19}],
    }
    outcome = answer(400, body).outcomes[2]
    assert outcome.errors == (FieldError("lineItems.0.taxes.0.taxRate", "m", 19),)
    assert outcome.id == "C"  # the answer gave no id: it comes from the record sent


def test_the_id_wins_when_it_contradicts_the_position() -> None:
    body = {"status": "INVALID", "errors": [{"id": "C", "key": "0.createdAt", "message": "m"}]}
    assert states(answer(400, body)) == [N, N, R]


def test_an_error_with_only_an_id_rejects_every_copy_of_it() -> None:
    body = {"status": "INVALID", "errors": [{"id": "X", "key": "createdAt", "message": "m"}]}
    result = answer(400, body, ["X", "Y", "X"])
    assert states(result) == [R, N, R]
    assert result.outcomes[0].errors == (FieldError("createdAt", "m", None),)


def test_422_with_errors_is_read_like_400() -> None:
    body = {"errors": [{"key": "1.id", "message": "id must be a string"}]}
    assert states(answer(422, body)) == [N, R, N]


# -- 4. rejected, ids and string errors ----------------------------------------------------------


@pytest.mark.parametrize("ids_key", ["orderIds", "failedOrderIds"])
def test_string_errors_with_order_ids(ids_key: str) -> None:
    body = {
        "status": "INVALID",
        ids_key: ["B"],
        "errors": ["orders.1.createdAt: (1.69e+22) has to be a unix timestamp! (isTimestamp)"],
    }
    result = answer(400, body)
    assert states(result) == [N, R, N]
    assert result.outcomes[1].errors == (
        FieldError("createdAt", "has to be a unix timestamp! (isTimestamp)", 1.69e22),
    )


def test_order_ids_without_parsable_strings_still_reject_those_ids() -> None:
    body = {"status": "INVALID", "orderIds": ["A", "C"], "errors": ["something odd happened"]}
    result = answer(400, body)
    assert states(result) == [R, N, R]
    assert "without giving a reason" in result.outcomes[0].errors[0].message


def test_nestjs_message_list() -> None:
    body = {"statusCode": 400, "message": ["0.createdAt must be a number"], "error": "Bad Request"}
    result = answer(400, body)
    assert states(result) == [R, N, N]
    assert result.outcomes[0].errors == (FieldError("createdAt", "must be a number", None),)


# -- 5. rejected, class-validator trees ----------------------------------------------------------


def _node(prop: str, *children: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"target": {}, "property": prop, "children": list(children), **extra}


def test_class_validator_tree_gives_the_full_path_and_value() -> None:
    leaf = _node(
        "taxRate",
        value="19%",
        constraints={"isNumber": "taxRate must be a number conforming to the specified constraints"},
    )
    tree = [_node("1", _node("lineItems", _node("0", _node("taxes", _node("0", leaf)))), value={"id": "B"})]
    result = answer(400, tree)
    assert states(result) == [N, R, N]
    assert result.outcomes[1].errors == (
        FieldError(
            "lineItems.0.taxes.0.taxRate",
            "taxRate must be a number conforming to the specified constraints",
            "19%",
        ),
    )


def test_class_validator_tree_under_a_wrapper_and_with_several_constraints() -> None:
    leaf = _node(
        "productCogs", value="x", constraints={"isNumber": "must be a number", "min": "must be >= 0"}
    )
    tree = [
        _node("items", _node("2", leaf), _node("0", _node("orderId", value=5, constraints={"isString": "s"})))
    ]
    result = answer(400, tree, resource="cogs")
    assert states(result) == [R, N, R]
    assert result.outcomes[2].errors == (FieldError("productCogs", "must be a number; must be >= 0", "x"),)
    assert result.outcomes[0].errors == (FieldError("orderId", "s", 5),)


def test_class_validator_node_without_position_rejects_every_record() -> None:
    tree = [_node("items", constraints={"isArray": "items must be an array"})]
    result = answer(400, tree, resource="cogs")
    assert states(result) == [R, R, R]
    assert result.outcomes[0].errors == (FieldError("", "items: items must be an array"),)


# -- errors tied to no record, unusable answers, other codes -------------------------------------


def test_reasons_tied_to_no_record_reject_every_record() -> None:
    result = answer(400, {"status": "INVALID", "errors": ["Unexpected token } in JSON at position 7"]})
    assert states(result) == [R, R, R]
    assert result.outcomes[2].errors == (FieldError("", "Unexpected token } in JSON at position 7"),)


def test_an_out_of_range_position_is_not_pinned_on_a_record() -> None:
    body = {"status": "INVALID", "errors": [{"key": "9.id", "message": "m"}, {"key": "0.id", "message": "n"}]}
    assert states(answer(400, body)) == [R, N, N]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b'{"message": "Bad Request"}',
        b"<html><body>400 Bad Request</body></html>",
        b'{"status": "INVALID"}',
    ],
)
def test_a_400_without_usable_detail_is_a_request_error(raw: bytes) -> None:
    with pytest.raises(KlarRequestError, match="without naming a record") as raised:
        answer(400, raw=raw)
    assert raised.value.http_status == 400


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_say_to_check_the_token(status: int) -> None:
    with pytest.raises(KlarAuthError, match="check the token of connection 'klar_default'"):
        answer(status, {"message": "Unauthorized"})


def test_not_found_says_to_check_url_and_version() -> None:
    with pytest.raises(
        KlarNotFoundError, match=r"check the base URL and API version \(API version 07.2025\)"
    ):
        answer(404, raw=b"Cannot POST /07.2025/orders/json")


def test_too_large_says_to_send_smaller_batches() -> None:
    with pytest.raises(KlarRequestError, match="lower batch_size"):
        answer(413)


def test_a_redirect_is_an_error_naming_the_target() -> None:
    with pytest.raises(KlarResponseError, match=r"https://elsewhere\.test"):
        answer(301, headers={"Location": "https://elsewhere.test/"})


def test_error_text_never_contains_the_token() -> None:
    with pytest.raises(KlarAuthError) as raised:
        answer(401, {"message": "bad token s3cr3t-token"})
    assert "s3cr3t-token" not in str(raised.value)
    assert "***" in str(raised.value)


def test_an_unexpected_success_code_is_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOG.name)
    assert states(answer(202, {"status": "VALID"})) == [A, A, A]
    assert "not one of the expected codes [200, 201]" in caplog.text


# -- the error readers on their own --------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("0.orderId", (0, "orderId")),
        ("12.lineItems.0.taxes.1.taxRate", (12, "lineItems.0.taxes.1.taxRate")),
        ("orders.3.createdAt", (3, "createdAt")),
        ("items.0.orderId", (0, "orderId")),
        ("[2].lineItems[0].sku", (2, "lineItems.0.sku")),
        ("4", (4, "")),
        (4, (4, "")),
        ("orderId", (None, "orderId")),
        ("lineItems.0.sku", (None, "lineItems.0.sku")),
        (None, (None, "")),
    ],
)
def test_split_key(key: Any, expected: tuple[int | None, str]) -> None:
    assert split_key(key) == expected


@pytest.mark.parametrize(
    ("text", "index", "path", "message", "value"),
    [
        ("orders.0.createdAt: (1.69e+22) has to be a unix timestamp! (isTimestamp)", 0, "createdAt",
         "has to be a unix timestamp! (isTimestamp)", 1.69e22),
        ('orders.2.currencyCodeIso3Letter: ("EURO") must be ISO 4217 (isISO4217)', 2,
         "currencyCodeIso3Letter", "must be ISO 4217 (isISO4217)", "EURO"),
        ("orders.1.lineItems.0.sku: (f(x)) bad", 1, "lineItems.0.sku", "bad", "f(x)"),
        ("3.id: id must be a string", 3, "id", "id must be a string", None),
        ("Error: payload too large", None, "", "Error: payload too large", None),
        ("something odd", None, "", "something odd", None),
    ],
)  # fmt: skip
def test_parse_error_string(text: str, index: int | None, path: str, message: str, value: Any) -> None:
    error = parse_error_string(text)
    assert (error.index, error.path, error.message, error.value) == (index, path, message, value)


@given(
    n=st.integers(min_value=1, max_value=30),
    keys=st.lists(st.integers(min_value=0, max_value=40), max_size=20),
)
def test_a_400_never_accepts_and_always_gives_one_outcome_per_record(n: int, keys: list[int]) -> None:
    ids: list[str | None] = [f"ORD-{i % 7}" for i in range(n)]
    body = {"status": "INVALID", "errors": [{"key": f"{k}.createdAt", "message": "m"} for k in keys]}
    outcomes, kind = outcomes_for(400, body, ids)
    if outcomes is None:
        assert not keys
        return
    assert kind == "rejection"
    assert [o.index for o in outcomes] == list(range(n))
    assert all(o.state is not A for o in outcomes)
    assert {o.index for o in outcomes if o.state is R} == ({k for k in keys if k < n} or set(range(n)))
