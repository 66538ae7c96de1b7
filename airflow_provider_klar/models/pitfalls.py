"""Checks for the mistakes Klar warns about that a schema cannot see: totals that do not add up.

They run on a record that already passed validation, so every number present is a finite number.
Each finding is a :class:`FieldError` whose message names the order id and the numbers; the record
validator reports them as warnings, or as errors when strict.

Klar computes every figure from unit values (gross = quantity x productGmv; net = gross - quantity x
sum(discounts) - quantity x sum(taxes)); the line totals are only checksums. A mismatch therefore
means either a wrong checksum or, much worse, totals sent where per-unit values belong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class _Lines:
    """One pass over an order's line items (bundles included): the checks, the ids, the sums.

    Written as plain loops over dicts because it runs for every valid order: the common, clean path
    does arithmetic only and builds no strings.
    """

    def __init__(self, order: str, *, collect_ids: bool) -> None:
        self.order = order
        # Line item ids matter only when refunded line items must be matched against them.
        self.ids: set[str] | None = set() if collect_ids else None
        self.found: list[FieldError] = []

    def warn(self, path: str, message: str, value: Any) -> None:
        self.found.append(FieldError(path, f"order {self.order}: {message}", value))

    def check(
        self, items: Sequence[Mapping[str, Any]], prefix: str, *, sums: list[float] | None = None
    ) -> None:
        """Check ``items``; add their line totals (gross, discounts, taxes, cogs) to ``sums`` if given."""
        ids = self.ids
        for i, item in enumerate(items):
            get = item.get
            if ids is not None and get("id") is not None:
                ids.add(item["id"])
            quantity = get("quantity")
            gmv = get("productGmv")
            before = get(_BEFORE)
            discount = 0.0
            for part in get("discounts") or ():
                discount += part.get("discountAmount") or 0
            tax = 0.0
            for part in get("taxes") or ():
                tax += part.get("taxAmount") or 0
            q = 0.0 if quantity is None else float(quantity)
            gross = before if before is not None else (None if gmv is None or quantity is None else gmv * q)
            if quantity is not None and gross is not None:
                # The common case is arithmetic only (written out: builtin calls cost more than the
                # sums); _line recomputes with _tolerance and words what is wrong.
                per_unit = CENT_PER_UNIT * q if q > 1.0 else CENT_PER_UNIT
                relative = RELATIVE * (gross if gross >= 0 else -gross)
                tolerance = per_unit if per_unit > relative else relative
                after = get(_AFTER)
                if gmv is not None and before is not None:
                    expected = gmv * q
                    relative = RELATIVE * (expected if expected >= 0 else -expected)
                    off = before - expected
                    gmv_off = (off if off >= 0 else -off) > (per_unit if per_unit > relative else relative)
                else:
                    gmv_off = False
                if after is not None:
                    off = after - (gross - q * discount - q * tax)
                    after_off = (off if off >= 0 else -off) > tolerance
                else:
                    after_off = False
                if (
                    gmv_off
                    or after_off
                    or (q > 1 and (q * discount > gross + tolerance or q * tax > gross + tolerance))
                ):
                    self._line(item, f"{prefix}{i}", (q, gmv, before, gross, discount, tax))
            children = get("bundledProducts")
            amounts = None
            if sums is not None or children:
                amounts = (gross or 0.0, q * discount, q * tax, q * (get("productCogs") or 0))
            if children and amounts is not None:
                totals = [0.0, 0.0, 0.0, 0.0]
                self.check(children, f"{prefix}{i}.bundledProducts.", sums=totals)
                self._bundle(f"{prefix}{i}", amounts, totals)
            if sums is not None and amounts is not None:
                for k in range(4):
                    sums[k] += amounts[k]

    def _line(
        self, item: Mapping[str, Any], path: str, numbers: tuple[float, Any, Any, Any, float, float]
    ) -> None:
        # numbers: quantity, productGmv, the gross line total sent, the gross used, discount and tax per unit.
        q, gmv, before, gross, discount, tax = numbers
        if gmv is not None and before is not None:
            expected = gmv * q
            if abs(before - expected) > _tolerance(q, expected):
                self.warn(
                    f"{path}.{_BEFORE}",
                    f"line total before taxes and discounts is {_money(before)}, but productGmv "
                    f"{_money(gmv)} x quantity {_qty(q)} = {_money(expected)}",
                    before,
                )
        if gross is None:
            return
        tolerance = _tolerance(q, gross)
        as_totals = False
        if q > 1:
            for key, per_unit in (("discounts", discount), ("taxes", tax)):
                if per_unit and q * per_unit > gross + tolerance:
                    as_totals = True
                    self.warn(
                        f"{path}.{key}",
                        f"{key} look like line totals: quantity {_qty(q)} x {key} per unit "
                        f"{_money(per_unit)} = {_money(q * per_unit)} exceeds the line's gross "
                        f"{_money(gross)}; send {key} per single unit",
                        per_unit,
                    )
        after = item.get(_AFTER)
        if after is None or as_totals:
            return
        expected_after = gross - q * discount - q * tax
        if abs(after - expected_after) > tolerance:
            message = (
                f"line total after taxes and discounts is {_money(after)}, but gross {_money(gross)} - "
                f"quantity {_qty(q)} x (discounts {_money(discount)} + taxes {_money(tax)}) = "
                f"{_money(expected_after)}"
            )
            if q > 1 and abs(after - (gross - discount - tax)) <= tolerance:
                message += (
                    "; it matches only if discounts and taxes are line totals: send them per single unit"
                )
            self.warn(f"{path}.{_AFTER}", message, after)

    def _bundle(self, path: str, parent: Sequence[float], totals: Sequence[float]) -> None:
        # Klar ignores a bundle parent's money and sums its constituents: money only on the parent is lost.
        for key, field, amount, total in zip(_KINDS, _KIND_FIELDS, parent, totals, strict=True):
            if amount - total > _tolerance(1.0, amount):
                self.warn(
                    f"{path}.{field}",
                    f"bundle parent carries {key} {_money(amount)} but its bundledProducts only "
                    f"{_money(total)}; Klar ignores a bundle parent's money and sums the constituents, "
                    f"so put the amounts on the bundledProducts",
                    amount,
                )


_KINDS = ("gross", "discounts", "taxes", "cogs")
_KIND_FIELDS = ("productGmv", "discounts", "taxes", "productCogs")


def check_order(order: Mapping[str, Any], order_id: str | None = None) -> list[FieldError]:
    """Return the pitfalls of one valid order (camelCase dict); empty when it is consistent.

    :param order: An order that passed validation.
    :param order_id: The id named in messages; defaults to the order's ``id``.
    """
    refunded_items = order.get("refundedLineItems")
    lines = _Lines(
        order_id if order_id is not None else str(order.get("id")), collect_ids=bool(refunded_items)
    )
    items = order.get("lineItems")
    if items:
        lines.check(items, "lineItems.")
    ids = lines.ids or set()
    for i, refunded in enumerate(refunded_items or ()):
        line_item_id = refunded.get("lineItemId")
        if line_item_id is not None and line_item_id not in ids:
            known = ", ".join(sorted(ids)[:10]) or "none"
            lines.warn(
                f"refundedLineItems.{i}.lineItemId",
                f"refunded line item {line_item_id!r} is not among the order's line items (ids: {known})",
                line_item_id,
            )
    return lines.found
