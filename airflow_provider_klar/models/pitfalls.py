"""Checks for the mistakes Klar warns about that a schema cannot see: totals that do not add up.

They run on a record that already passed validation, so every number present is a finite number.
Each finding is a :class:`FieldError` whose message names the order id and the numbers; the record
validator reports them as warnings, or as errors when strict.

Klar computes every figure from unit values (gross = quantity x productGmv; net = gross - quantity x
sum(discounts) - quantity x sum(taxes)); the line totals are only checksums. A mismatch therefore
means either a wrong checksum or, much worse, totals sent where per-unit values belong.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_klar.results import FieldError

#: Allowed rounding difference: one cent per unit, or half a percent of the amount compared.
CENT_PER_UNIT = 0.01
RELATIVE = 0.005

_BEFORE = "totalAmountBeforeTaxesAndDiscounts"
_AFTER = "totalAmountAfterTaxesAndDiscounts"


def _tolerance(quantity: float, amount: float) -> float:
    return max(CENT_PER_UNIT * max(quantity, 1.0), RELATIVE * abs(amount))


def _money(value: float) -> str:
    return f"{value:.2f}"


def _qty(value: float) -> str:
    return f"{value:g}"


def _sum(parts: Any, key: str) -> float:
    if not parts:
        return 0.0
    return float(sum(p.get(key) or 0 for p in parts))


def _gross(item: Mapping[str, Any]) -> float | None:
    before = item.get(_BEFORE)
    if before is not None:
        return float(before)
    gmv, quantity = item.get("productGmv"), item.get("quantity")
    return None if gmv is None or quantity is None else float(gmv) * float(quantity)


def _line_amounts(item: Mapping[str, Any]) -> dict[str, float]:
    """Return the money of one line as Klar adds it up: gross, discounts, taxes and cogs, as line totals."""
    quantity = float(item.get("quantity") or 0)
    return {
        "gross": _gross(item) or 0.0,
        "discounts": quantity * _sum(item.get("discounts"), "discountAmount"),
        "taxes": quantity * _sum(item.get("taxes"), "taxAmount"),
        "cogs": quantity * float(item.get("productCogs") or 0),
    }


def _check_line(order: str, item: Mapping[str, Any], path: str) -> Iterator[FieldError]:
    quantity, gmv = item.get("quantity"), item.get("productGmv")
    before, after = item.get(_BEFORE), item.get(_AFTER)
    q = float(quantity) if quantity is not None else None
    if q is not None and gmv is not None and before is not None:
        expected = float(gmv) * q
        if abs(before - expected) > _tolerance(q, expected):
            yield FieldError(
                f"{path}.{_BEFORE}",
                f"order {order}: line total before taxes and discounts is {_money(before)}, but productGmv "
                f"{_money(gmv)} x quantity {_qty(q)} = {_money(expected)}",
                before,
            )
    gross = _gross(item)
    if q is None or gross is None:
        return
    discounts = _sum(item.get("discounts"), "discountAmount")
    taxes = _sum(item.get("taxes"), "taxAmount")
    as_totals = False
    for key, per_unit in (("discounts", discounts), ("taxes", taxes)):
        if q > 1 and per_unit and q * per_unit > gross + _tolerance(q, gross):
            as_totals = True
            yield FieldError(
                f"{path}.{key}",
                f"order {order}: {key} look like line totals: quantity {_qty(q)} x {key} per unit "
                f"{_money(per_unit)} = {_money(q * per_unit)} exceeds the line's gross {_money(gross)}; "
                f"send {key} per single unit",
                per_unit,
            )
    if after is None or as_totals:
        return
    expected_after = gross - q * discounts - q * taxes
    tolerance = _tolerance(q, gross)
    if abs(after - expected_after) > tolerance:
        message = (
            f"order {order}: line total after taxes and discounts is {_money(after)}, but gross "
            f"{_money(gross)} - quantity {_qty(q)} x (discounts {_money(discounts)} + taxes "
            f"{_money(taxes)}) = {_money(expected_after)}"
        )
        if q > 1 and abs(after - (gross - discounts - taxes)) <= tolerance:
            message += "; it matches only if discounts and taxes are line totals: send them per single unit"
        yield FieldError(f"{path}.{_AFTER}", message, after)


def _check_bundle(order: str, item: Mapping[str, Any], path: str) -> Iterator[FieldError]:
    constituents = item.get("bundledProducts")
    if not constituents:
        return
    parent = _line_amounts(item)
    totals = dict.fromkeys(parent, 0.0)
    for child in constituents:
        for key, value in _line_amounts(child).items():
            totals[key] += value
    fields = {"gross": "productGmv", "discounts": "discounts", "taxes": "taxes", "cogs": "productCogs"}
    for key, amount in parent.items():
        if amount - totals[key] > _tolerance(1.0, amount):
            yield FieldError(
                f"{path}.{fields[key]}",
                f"order {order}: bundle parent carries {key} {_money(amount)} but its bundledProducts only "
                f"{_money(totals[key])}; Klar ignores a bundle parent's money and sums the constituents, "
                f"so put the amounts on the bundledProducts",
                amount,
            )


def _walk_lines(items: Sequence[Mapping[str, Any]], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for i, item in enumerate(items):
        item_path = f"{path}.{i}"
        yield item_path, item
        children = item.get("bundledProducts")
        if children:
            yield from _walk_lines(children, f"{item_path}.bundledProducts")


def check_order(order: Mapping[str, Any], order_id: str | None = None) -> list[FieldError]:
    """Return the pitfalls of one valid order (camelCase dict); empty when it is consistent.

    :param order: An order that passed validation.
    :param order_id: The id named in messages; defaults to the order's ``id``.
    """
    name = order_id if order_id is not None else str(order.get("id"))
    found: list[FieldError] = []
    line_ids: set[str] = set()
    for path, item in _walk_lines(order.get("lineItems") or (), "lineItems"):
        if item.get("id") is not None:
            line_ids.add(item["id"])
        found.extend(_check_line(name, item, path))
        found.extend(_check_bundle(name, item, path))
    for i, refunded in enumerate(order.get("refundedLineItems") or ()):
        line_item_id = refunded.get("lineItemId")
        if line_item_id is not None and line_item_id not in line_ids:
            known = ", ".join(sorted(line_ids)[:10]) or "none"
            found.append(
                FieldError(
                    f"refundedLineItems.{i}.lineItemId",
                    f"order {name}: refunded line item {line_item_id!r} is not among the order's line items "
                    f"(ids: {known})",
                    line_item_id,
                )
            )
    return found
