"""The resources other than orders: refunds, cost of goods sold, logistics costs, transaction costs."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from airflow_provider_klar.models._base import E_COGS_KEY, KlarModel, Money, NonNegative, Omittable, Timestamp
from airflow_provider_klar.models.orders import RefundedLineItem


class Refund(KlarModel):
    """A refund of units of an order's line items (the ``refunds`` resource)."""

    id: str = Field(description="Unique id of the refund (required, a string). Sending it again overwrites.")
    created_at: Omittable[Timestamp] = Field(
        None, description="Unix timestamp in seconds when the refund was created."
    )
    updated_at: Omittable[Timestamp] = Field(
        None, description="Unix timestamp in seconds when the refund last changed in the shop."
    )
    line_items: Omittable[list[RefundedLineItem]] = Field(
        None, description="The refunded units; an empty list [] cancels the refund."
    )


class Cogs(KlarModel):
    """Cost of goods sold of one line of an order (the ``cogs`` resource), keyed by lineItemId or sku."""

    order_id: str = Field(description="The id of the order (required, a string).")
    line_item_id: Omittable[str] = Field(
        None, description="The id of the order's line item; this or sku is required."
    )
    sku: Omittable[str] = Field(
        None, description="The sku of the order's line item; this or lineItemId is required."
    )
    product_cogs: NonNegative = Field(
        description="Cost of goods sold of one unit, excluding tax (required). Not negative."
    )

    @model_validator(mode="after")
    def _line_item_id_or_sku(self) -> Cogs:
        # One comparison per record: cheap, and pydantic-core has no "one of these fields" constraint.
        if self.line_item_id is None and self.sku is None:
            raise PydanticCustomError(E_COGS_KEY, "cogs need lineItemId or sku")
        return self


class LogisticsCosts(KlarModel):
    """Logistics costs of one order (the ``logistics-costs`` resource)."""

    order_id: str = Field(description="The id of the order (required, a string).")
    total_logistics_costs: Money = Field(
        description="What shipping the order cost the shop, order total excluding tax (required)."
    )


class TransactionCosts(KlarModel):
    """Payment and transaction costs of one order (the ``transaction-costs`` resource)."""

    order_id: str = Field(
        description="The id of the order (required, a string: Klar answers a number with "
        "'orderId must be a string')."
    )
    transaction_costs: Money = Field(description="Payment and transaction costs of the order (required).")
