from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from payments_api.money import Currency, MinorAmount


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


class AutoReloadSet(BaseModel):
    """Top the wallet up with the default card when available falls below `threshold`."""

    currency: Currency
    threshold: MinorAmount = Field(description="Minor units: a fall below it tops up once.")
    amount: MinorAmount = Field(description="Minor units charged, within the top-up limits.")
    enabled: bool = Field(True, description="false turns auto-reload off for the currency.")


class AutoReloadRead(BaseModel):
    currency: str
    threshold: int
    amount: int
    enabled: bool
    below: bool = Field(
        description="Available was below the threshold when last seen: the next top-up "
        "waits until it has come back up (one per crossing)."
    )


class AutoReloadList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[AutoReloadRead]
    has_more: bool = False
