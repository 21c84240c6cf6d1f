from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from payments_api.money import Currency, MinorAmount
from payments_api.payout_accounts.schemas import PayoutAccountRead

WithdrawalStatus = Literal["pending", "transferred", "failed", "reversed"]
PayoutStatus = Literal["pending", "in_transit", "paid", "failed", "canceled"]


class WithdrawalCreate(BaseModel):
    amount: MinorAmount
    currency: Currency


class WithdrawalRead(BaseModel):
    id: str = Field(examples=["wd_12"])
    amount: int = Field(description="Minor units.")
    currency: str
    status: WithdrawalStatus = Field(
        description="pending: held, transfer in progress; transferred: on the payout "
        "account; failed / reversed: money back in available."
    )
    failure_code: str | None
    created_at: datetime
    transferred_at: datetime | None


class PayoutRead(BaseModel):
    """A bank payout of the connected account, as Stripe reports it."""

    id: str = Field(examples=["po_1OaFDbEcg9tTZuTgNYmX0PKB"])
    amount: int = Field(description="Minor units.")
    currency: str
    status: PayoutStatus
    arrival_date: datetime | None
    created: datetime
    failure_code: str | None = None


class PayoutList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[PayoutRead] = Field(description="The connected account's payouts, newest first.")
    has_more: bool
    withdrawals: list[WithdrawalRead] = Field(
        description="The caller's withdrawal requests (platform -> payout account), newest first."
    )
    payout_account: PayoutAccountRead
