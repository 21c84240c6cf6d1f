from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from payments_api.money import Currency, MinorAmount
from payments_api.payout_accounts.schemas import PayoutAccountRead


class WithdrawalStatus(StrEnum):
    """A withdrawal's state (a class, so the OpenAPI component keeps this name whichever
    schema uses it first)."""

    pending = "pending"
    transferred = "transferred"
    failed = "failed"
    reversed = "reversed"


class StripePayoutStatus(StrEnum):
    """A bank payout's status at Stripe (named apart from EarningsPayoutStatus: the two
    generated PayoutStatus and PayoutReadStatus, which clients could not tell apart)."""

    pending = "pending"
    in_transit = "in_transit"
    paid = "paid"
    failed = "failed"
    canceled = "canceled"


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
    expected_arrival_date: date | None = Field(
        None,
        description="When the money should reach the payee's bank: the request's date plus "
        "the connected account's payout delay (Stripe's `settings.payouts.schedule`; "
        "`payout_default_delay_days` until it is known), moved to the schedule's next "
        "weekly or monthly anchor; null for manual payouts.",
    )


class WithdrawalCreated(WithdrawalRead):
    """The answer to a withdrawal request."""

    available_after: int = Field(
        description="The payee's available balance in the currency right after the request "
        "(the amount is held; a refused transfer has already given it back)."
    )


class WithdrawalList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[WithdrawalRead] = Field(description="Newest first.")
    has_more: bool


class PayoutRead(BaseModel):
    """A bank payout of the connected account, as Stripe reports it."""

    id: str = Field(examples=["po_1OaFDbEcg9tTZuTgNYmX0PKB"])
    amount: int = Field(description="Minor units.")
    currency: str
    status: StripePayoutStatus
    arrival_date: datetime | None = Field(
        description="When Stripe expects the money in the bank (ISO 8601, like every date "
        "in this API; Stripe's own unix timestamp is converted)."
    )
    created_at: datetime = Field(description="When Stripe created the payout (ISO 8601).")
    created: datetime = Field(
        deprecated=True,
        description="Deprecated: the same instant as `created_at`, kept for clients of the "
        "first release; every other resource names it `created_at`.",
    )
    failure_code: str | None = None


class PayoutList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[PayoutRead] = Field(description="The connected account's payouts, newest first.")
    has_more: bool
    withdrawals: list[WithdrawalRead] = Field(
        deprecated=True,
        description="Deprecated: the caller's 20 newest withdrawal requests; page through "
        "all of them with GET /api/v1/me/withdrawals.",
    )
    payout_account: PayoutAccountRead
