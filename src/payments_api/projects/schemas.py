"""Projects, sessions and the project wallet as the API shows them (SPEC 6.3)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from payments_api.money import Currency, MoneyRead
from payments_api.payout_accounts.schemas import PayoutAccountRead

ProjectStatus = Literal["active", "archived"]
SessionStatus = Literal["open", "closed"]
DirectPaymentKind = Literal["tip", "request"]


class ProjectCreate(BaseModel):
    """A new earning context of the caller (a shop, a show, a channel)."""

    name: str = Field(min_length=1, max_length=120, examples=["Friday night stream"])
    description: str | None = Field(None, max_length=2000)
    currency: Currency = Field(
        description="Every payment to the project is in this currency; fixed once created."
    )


class ProjectUpdate(BaseModel):
    """Fields to change; omitted fields stay as they are."""

    name: str | None = Field(None, min_length=1, max_length=120)
    description: str | None = Field(None, max_length=2000, description="null clears it.")
    status: ProjectStatus | None = Field(
        None,
        description="archived: the project takes no new payments or sessions (history and "
        "wallet stay); active again re-opens it.",
    )


class ProjectRead(BaseModel):
    object: Literal["project"] = Field("project", description="Always `project`.")
    id: str = Field(examples=["prj_12"])
    name: str
    description: str | None
    currency: str = Field(examples=["usd"])
    status: ProjectStatus
    open_session_id: str | None = Field(
        description="The session currently open, if any.", examples=["ses_40"]
    )
    created_at: datetime
    updated_at: datetime


class ProjectList(BaseModel):
    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[ProjectRead] = Field(description="Newest first.")
    has_more: bool


class SessionCreate(BaseModel):
    """Open an earning window of the project now."""

    title: str | None = Field(None, max_length=120, examples=["Show #41"])


class SessionFields(BaseModel):
    """What every read of a session shows (``SessionRead``, ``SessionAggregateRead``)."""

    object: Literal["project_session"] = Field(
        "project_session", description="Always `project_session`."
    )
    id: str = Field(examples=["ses_40"])
    project_id: str = Field(examples=["prj_12"])
    title: str | None
    status: SessionStatus
    opened_at: datetime
    closed_at: datetime | None


class SessionRead(SessionFields):
    status: SessionStatus = Field(description="open: payments may name it; closed: no more.")


class SessionList(BaseModel):
    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[SessionRead] = Field(description="Newest first.")
    has_more: bool


class ConnectedBalance(BaseModel):
    """The connected account's Stripe balance (``GET /v1/balance`` as that account)."""

    available: list[MoneyRead] = Field(
        description="Per currency: can be paid out to the payee's bank now."
    )
    pending: list[MoneyRead] = Field(description="Per currency: not yet available at Stripe.")


class EarningsAggregate(BaseModel):
    """Sums of the payee's take (net of the platform's application fee) over confirmed
    direct payments, in the project's currency."""

    currency: str = Field(examples=["usd"])
    payment_count: int = Field(description="Confirmed direct payments.", examples=[14])
    paid_request_count: int = Field(description="Confirmed payments of kind `request`.")
    tip_count: int = Field(description="Confirmed payments of kind `tip`.")
    total_tip_amount_cents: int = Field(
        description="The payee's take from tips, in minor units.", examples=[7_200]
    )
    total_request_amount_cents: int = Field(
        description="The payee's take from paid requests, in minor units."
    )
    total_earned_amount_cents: int = Field(
        description="The payee's take from all direct payments, in minor units."
    )
    last_paid_at: datetime | None = Field(description="When the latest payment was confirmed.")


class ProjectEarnings(EarningsAggregate):
    session_count: int = Field(description="Sessions ever opened for the project.")


class ProjectWalletRead(BaseModel):
    """The payee's view of money for one project."""

    object: Literal["project_wallet"] = Field(
        "project_wallet", description="Always `project_wallet`."
    )
    project_id: str = Field(examples=["prj_12"])
    scope: Literal["account_level"] = Field(
        "account_level",
        description="`balance` is the whole connected account's (Stripe keeps one balance "
        "per account, shared by all of the payee's projects); `earnings` are this "
        "project's own.",
    )
    balance: ConnectedBalance = Field(
        description="Empty lists when the payee has no connected account yet."
    )
    earnings: ProjectEarnings
    payout_account: PayoutAccountRead


class SessionAggregateRead(SessionFields, EarningsAggregate):
    """A session with what it earned."""


class SessionAggregateList(BaseModel):
    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[SessionAggregateRead] = Field(description="Newest first.")
    has_more: bool
