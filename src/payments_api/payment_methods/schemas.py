from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class SetupIntentRead(BaseModel):
    """A Stripe SetupIntent saving a card for later (off-session) payments."""

    setup_intent_id: str = Field(examples=["seti_1Mm8s8"])
    client_secret: str | None = Field(
        description="Hand to Stripe's SDK (PaymentSheet, Payment Element) to collect and "
        "confirm the card; the card is saved when Stripe sends setup_intent.succeeded."
    )
    status: str = Field(description="Stripe's SetupIntent status.")
    customer: str = Field(description="The caller's Stripe Customer.", examples=["cus_NffrFe"])


class PaymentMethodRead(BaseModel):
    """A saved card. Only what identifies it to its owner: never the number or CVC."""

    id: str = Field(examples=["pmt_12"])
    type: Literal["card"] = "card"
    brand: str = Field(examples=["visa"])
    last4: str = Field(examples=["4242"])
    exp_month: int = Field(examples=[12])
    exp_year: int = Field(examples=[2030])
    is_default: bool = Field(description="Charged by off-session top-ups.")
    status: Literal["active", "detached"]
    created_at: datetime
    detached_at: datetime | None = None


class PaymentMethodList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[PaymentMethodRead]
    has_more: bool = False
