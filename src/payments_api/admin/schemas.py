from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from payments_api.ledger.kinds import AccountKind
from payments_api.money import Currency, SignedMinorAmount


class AccountName(BaseModel):
    """A ledger account: a user's (`user_id` + user kind) or the platform's (kind only)."""

    user_id: str | None = Field(
        None, max_length=255, description="Owner; omit for platform accounts."
    )
    kind: AccountKind


class AdjustmentPosting(BaseModel):
    account: AccountName
    amount: SignedMinorAmount


class AdjustmentCreate(BaseModel):
    """A manual, balanced correction: the postings must sum to zero."""

    currency: Currency
    reason: str = Field(min_length=3, max_length=500, examples=["Goodwill credit, ticket 812"])
    postings: list[AdjustmentPosting] = Field(
        min_length=2,
        max_length=20,
        examples=[
            [
                {"account": {"user_id": "user_123", "kind": "available"}, "amount": 500},
                {"account": {"kind": "adjustments"}, "amount": -500},
            ]
        ],
    )


class PostingRead(BaseModel):
    account: AccountName
    amount: int = Field(description="Signed minor units.")
    currency: str


class LedgerTransactionRead(BaseModel):
    id: str = Field(examples=["ltx_17"])
    type: str
    cause_type: str
    description: str | None
    created_at: datetime
    reverses_transaction_id: str | None = None
    postings: list[PostingRead]


class FreezeRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=500, examples=["Suspected account takeover"])


class UnfreezeRequest(BaseModel):
    reason: str | None = Field(None, max_length=500)


class WalletStatusRead(BaseModel):
    user_id: str
    frozen: bool
    frozen_reason: str | None
