from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from payments_api.ledger.kinds import AccountKind


class CurrencyBalance(BaseModel):
    """A user's money in one currency, in minor units."""

    currency: str = Field(description="Lowercase ISO 4217 code.", examples=["usd"])
    available: int = Field(description="Spendable and withdrawable.", examples=[9500])
    escrow: int = Field(description="Held for open jobs.", examples=[10500])
    withdrawing: int = Field(description="On its way to the payout account.", examples=[0])
    refunding: int = Field(
        0,
        description="Cashed out to the customer's cards (POST /api/v1/me/wallet/refunds), "
        "until Stripe confirms each refund; a failed refund returns to available.",
        examples=[0],
    )
    pending: int = Field(
        description="Pay-ins started but not yet confirmed by Stripe.", examples=[0]
    )
    authorized: int = Field(
        0,
        description="Held on the customer's card for escrows paid by authorization and "
        "not captured yet. Never part of `available` or `escrow`: only what is captured "
        "enters the escrow; the rest is released to the card.",
        examples=[0],
    )


class BalanceRead(BaseModel):
    object: str = Field("balance", description="Always `balance`.")
    balances: list[CurrencyBalance] = Field(
        description="One entry per currency with any non-zero amount."
    )
    frozen: bool = Field(description="Withdrawals are blocked while frozen.")


class LedgerEntryRead(BaseModel):
    """One posting on one of the user's accounts."""

    id: str = Field(description="Entry id (cursor for `starting_after`).", examples=["le_42"])
    transaction_id: str = Field(examples=["ltx_17"])
    account: AccountKind = Field(description="Which of the user's accounts moved.")
    amount: int = Field(description="Signed minor units: positive credits the account.")
    currency: str = Field(examples=["usd"])
    type: str = Field(description="What happened (topup, escrow_hold, ...).")
    description: str | None = None
    created_at: datetime


class LedgerEntryList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[LedgerEntryRead]
    has_more: bool = Field(description="More entries exist after the last one returned.")
