from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from payments_api.earnings.models import EarningSource
from payments_api.earnings.payout_status import EarningsPayoutStatus

__all__ = ["EarningsPayoutStatus"]


class PayoutStatusTotals(BaseModel):
    """The payee's take in one currency by where the money is now (all time; they add up
    to ``all_time``)."""

    available: int = Field(description="In the wallet, withdrawable.", examples=[16_000])
    withdrawing: int = Field(description="Held by withdrawals not yet transferred.")
    in_transit: int = Field(
        description="On the connected account, not yet paid out to the bank.", examples=[8_000]
    )
    paid: int = Field(description="Paid out to the bank.", examples=[456_000])
    reversed: int = Field(description="Taken back by refunds of direct payments.")


class EarningRead(BaseModel):
    """One thing a payee earned. Only the payee's take is shown: never the customer's
    price or any fee."""

    object: Literal["earning"] = Field("earning", description="Always `earning`.")
    id: str = Field(description="Entry id (cursor for `starting_after`).", examples=["ern_7"])
    source: EarningSource = Field(description="What the money came from.")
    escrow_id: str | None = Field(description="The completed escrow (job).", examples=["esc_12"])
    payment_id: str | None = Field(description="The direct payment, for source `payment`.")
    reference: str | None = Field(description="The job reference.", examples=["job-2026-0142"])
    project_id: str | None
    session_id: str | None
    amount: int = Field(description="The payee's take in minor units.", examples=[8_000])
    currency: str = Field(examples=["usd"])
    earned_at: datetime = Field(
        description="When it was earned, with the offset of the requested time zone."
    )
    payout_status: EarningsPayoutStatus = Field(
        description="Where this take's money is now: `available` (in the wallet), "
        "`withdrawing` (a withdrawal holds it), `in_transit` (on the connected account, "
        "not yet at the bank), `paid` (paid out to the bank) or `reversed` (a refund took "
        "it back). Withdrawals and payouts are attributed to earnings oldest first, per "
        "currency; an entry split between two states shows the later one's."
    )


class EarningsSummary(BaseModel):
    """Sums of the payee's take in one currency, over calendar days of the time zone."""

    currency: str = Field(examples=["usd"])
    today: int = Field(description="Since local midnight today.", examples=[8_000])
    last_7_days: int = Field(description="Today and the 6 days before it.", examples=[24_000])
    last_30_days: int = Field(description="Today and the 29 days before it.", examples=[96_000])
    all_time: int = Field(examples=[480_000])
    by_payout_status: PayoutStatusTotals = Field(
        description="All-time take by where the money is now (exact to the minor unit)."
    )


class EarningsList(BaseModel):
    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[EarningRead] = Field(description="Newest first.")
    has_more: bool = Field(description="More entries exist after the last one returned.")
    summary: list[EarningsSummary] = Field(
        description="Per currency (filtered by `currency` and `project_id` when given; the "
        "date range does not apply to it)."
    )
    timezone: str = Field(
        description="IANA time zone of the summary windows and the date filters.",
        examples=["Europe/Berlin"],
    )
    summary_as_of: datetime = Field(description="The instant the summary was computed for.")
