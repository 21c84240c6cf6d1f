from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from payments_api.kit.list_pages import ListPage


class DisputeRead(BaseModel):
    id: str = Field(examples=["dsp_4"])
    object: Literal["dispute"] = "dispute"
    stripe_dispute_id: str = Field(examples=["dp_1Pgc71B7WZ01zgkWMevJiAUx"])
    order_id: str | None = Field(None, description="The disputed pay-in, when it is ours.")
    invoice_id: str | None = Field(
        None,
        description="The subscription invoice (Stripe id) the disputed charge paid, when ours.",
        examples=["in_1Abc"],
    )
    user_id: str | None = Field(None, description="The customer who paid it.")
    amount: int = Field(description="Disputed amount, minor units.")
    currency: str
    status: str = Field(
        description="Stripe's status: warning_needs_response, warning_under_review, "
        "warning_closed, needs_response, under_review, won, lost or prevented."
    )
    reason: str | None = None
    withdrawn_amount: int = Field(description="Taken by Stripe: amount plus dispute fee.")
    fee_amount: int = Field(description="Stripe's dispute fee (part of withdrawn_amount).")
    user_debited_amount: int = Field(
        description="Taken from the customer's available balance (may have made it negative)."
    )
    reinstated_amount: int = Field(description="Given back by Stripe when won.")
    platform_loss_amount: int | None = Field(
        None, description="When lost: what the customer's wallet did not cover."
    )
    froze_wallet: bool = Field(description="This dispute froze the customer's wallet.")
    created_at: datetime
    closed_at: datetime | None = None


class DisputeList(ListPage[DisputeRead]):
    pass
