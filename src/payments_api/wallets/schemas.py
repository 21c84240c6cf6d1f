from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from payments_api.money import Currency, MinorAmount


class WalletDebitCreate(BaseModel):
    amount: MinorAmount = Field(description="Within the currency's debit limits.")
    currency: Currency
    description: str = Field(
        min_length=1, max_length=500, description="What the user is charged for."
    )
    reference: str | None = Field(
        None, min_length=1, max_length=255, description="Your id for the usage charged."
    )


class WalletDebitRead(BaseModel):
    object: Literal["wallet_debit"] = "wallet_debit"
    id: str = Field(description="The ledger transaction of the debit.", examples=["ltx_42"])
    user_id: str
    amount: int
    currency: str
    description: str
    reference: str | None
    available_after: int = Field(description="The user's available balance after it.")
    created_at: datetime
