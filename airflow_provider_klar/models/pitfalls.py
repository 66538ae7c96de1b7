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


class _Pitfall(FieldError):
    """A pitfall warning worded only when its message is read.

    An upload counts every record's warnings by field but quotes only the first of each kind, and an
    order that trips the checks usually trips several: wording each (four to six numbers) cost about as
    much as all the checks of a clean order. In every other way it is the :class:`FieldError` with the
    same path, message and value: equal to it, hashed, shown and pickled as it.
    """

    __slots__ = ("_words",)
    _words: tuple[str, str, tuple[Any, ...]]

    @classmethod
    def make(cls, path: str, value: Any, order: str, template: str, args: tuple[Any, ...]) -> _Pitfall:
        """Return the warning at ``path`` about ``value``, worded ``template.format(*args)`` when read."""
        # FieldError is frozen: its slots are filled through their descriptors, as its __init__ would
        # through object.__setattr__, for about half the cost.
        pitfall = _new(cls)
        _set_path(pitfall, path)
        _set_value(pitfall, value)
        _set_words(pitfall, (order, template, args))
        return pitfall

    @property  # type: ignore[override]  # read-only here; a FieldError's message is a field
    def message(self) -> str:
        order, template, args = self._words
        # Amounts with two decimals ({:.2f}), quantities as short as they go ({:g}).
        return f"order {order}: {template.format(*args)}"

    def _plain(self) -> FieldError:
        return FieldError(self.path, self.message, self.value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FieldError):
            return (self.path, self.message, self.value) == (other.path, other.message, other.value)
        return NotImplemented

    __hash__ = FieldError.__hash__

    def __repr__(self) -> str:
        return repr(self._plain())

    def __reduce__(self) -> tuple[Any, ...]:
        return (FieldError, (self.path, self.message, self.value))


_new = object.__new__
_set_path = FieldError.__dict__["path"].__set__
_set_value = FieldError.__dict__["value"].__set__
_set_words = _Pitfall.__dict__["_words"].__set__


_BEFORE_OFF = (
    "line total before taxes and discounts is {0:.2f}, but productGmv {1:.2f} x quantity {2:g} = {3:.2f}"
)
_AS_TOTALS = (
    "{0} look like line totals: quantity {1:g} x {0} per unit {2:.2f} = {3:.2f} exceeds the line's gross "
    "{4:.2f}; send {0} per single unit"
)
_AFTER_OFF = (
    "line total after taxes and discounts is {0:.2f}, but gross {1:.2f} - quantity {2:g} x "
    "(discounts {3:.2f} + taxes {4:.2f}) = {5:.2f}"
)
_AFTER_OFF_AS_TOTALS = (
    _AFTER_OFF + "; it matches only if discounts and taxes are line totals: send them per single unit"
)
_BUNDLE_OFF = (
    "bundle parent carries {0} {1:.2f} but its bundledProducts only {2:.2f}; Klar ignores a bundle "
    "parent's money and sums the constituents, so put the amounts on the bundledProducts"
)
_NOT_A_LINE_ITEM = "refunded line item {0!r} is not among the order's line items (ids: {1})"


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

    def warn(self, path: str, value: Any, template: str, *args: Any) -> None:
        self.found.append(_Pitfall.make(path, value, self.order, template, args))

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
                # sums); _line says what is wrong, from the same figures.
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
                    figures = (q, gmv, before, gross, discount, tax, after, tolerance, gmv_off, after_off)
                    self._line(f"{prefix}{i}", figures)
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
        self, path: str, figures: tuple[float, Any, Any, float, float, float, Any, float, bool, bool]
    ) -> None:
        """Say what is wrong with the line item at ``path``, from the figures :meth:`check` computed."""
        q, gmv, before, gross, discount, tax, after, tolerance, gmv_off, after_off = figures
        if gmv_off:
            self.warn(f"{path}.{_BEFORE}", before, _BEFORE_OFF, before, gmv, q, gmv * q)
        as_totals = False
        if q > 1:
            for key, per_unit in (("discounts", discount), ("taxes", tax)):
                if per_unit and q * per_unit > gross + tolerance:
                    as_totals = True
                    self.warn(f"{path}.{key}", per_unit, _AS_TOTALS, key, q, per_unit, q * per_unit, gross)
        if after_off and not as_totals:
            expected_after = gross - q * discount - q * tax
            lines_totals = q > 1 and abs(after - (gross - discount - tax)) <= tolerance
            template = _AFTER_OFF_AS_TOTALS if lines_totals else _AFTER_OFF
            self.warn(f"{path}.{_AFTER}", after, template, after, gross, q, discount, tax, expected_after)

    def _bundle(self, path: str, parent: Sequence[float], totals: Sequence[float]) -> None:
        # Klar ignores a bundle parent's money and sums its constituents: money only on the parent is lost.
        for key, field, amount, total in zip(_KINDS, _KIND_FIELDS, parent, totals, strict=True):
            if amount - total > _tolerance(1.0, amount):
                self.warn(f"{path}.{field}", amount, _BUNDLE_OFF, key, amount, total)


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
                f"refundedLineItems.{i}.lineItemId", line_item_id, _NOT_A_LINE_ITEM, line_item_id, known
            )
    return lines.found
