"""The payout-account contract (SPEC 6.3, binding): field names and status values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from payments_api.payout_accounts.status import PayoutAccountStatus

_ENABLED_EXAMPLE: dict[str, Any] = {
    "status": "enabled",
    "setup_complete": True,
    "status_reason": None,
    "stripe_account_id": "acct_1PgafTB7WZ01zgkW",
    "charges_enabled": True,
    "payouts_enabled": True,
    "requirements_currently_due": [],
    "requirements_past_due": [],
}


class PayoutAccountRead(BaseModel):
    """The caller's Stripe Connect Express account, as last confirmed by Stripe."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ENABLED_EXAMPLE]})

    status: PayoutAccountStatus = Field(
        description="not_started (no account yet), pending (onboarding or review in "
        "progress), enabled (can be paid out), restricted (Stripe disabled it)."
    )
    setup_complete: bool = Field(description="True only when `status` is `enabled`.")
    status_reason: str | None = Field(
        description="Machine code explaining the status: requirements_due, under_review, "
        "details_submitted_false, capabilities_pending, requirements_past_due, or Stripe's "
        "`requirements.disabled_reason` (e.g. rejected.fraud). Null when enabled or "
        "not started.",
        examples=["requirements_due"],
    )
    stripe_account_id: str | None = Field(
        description="The Express account (`acct_...`), once created.",
        examples=["acct_1PgafTB7WZ01zgkW"],
    )
    charges_enabled: bool = Field(description="Stripe's `charges_enabled`.")
    payouts_enabled: bool = Field(description="Stripe's `payouts_enabled`.")
    requirements_currently_due: list[str] = Field(
        description="Stripe's `requirements.currently_due`: what the payee must still provide.",
        examples=[["external_account", "tos_acceptance.date"]],
    )
    requirements_past_due: list[str] = Field(
        description="Stripe's `requirements.past_due`: overdue items that disable the account.",
        examples=[[]],
    )

    @classmethod
    def not_started(cls) -> PayoutAccountRead:
        return cls(
            status=PayoutAccountStatus.not_started,
            setup_complete=False,
            status_reason=None,
            stripe_account_id=None,
            charges_enabled=False,
            payouts_enabled=False,
            requirements_currently_due=[],
            requirements_past_due=[],
        )


class PayoutAccountEnvelope(BaseModel):
    payout_account: PayoutAccountRead


class OnboardingLinkRead(BaseModel):
    """A fresh, single-use Stripe onboarding link: open it right away, never store it."""

    url: str = Field(
        description="Stripe-hosted onboarding page. Single use; expires within minutes.",
        examples=["https://connect.stripe.com/setup/e/acct_1PgafTB7WZ01zgkW/MerI6itPZo2K"],
    )
    expires_at: datetime | None = Field(description="When Stripe stops accepting the link.")
    payout_account: PayoutAccountRead


class DashboardLinkRead(BaseModel):
    """A one-time login link to the payee's Stripe Express dashboard."""

    url: str = Field(
        description="One-time Express dashboard login URL; open it right away.",
        examples=["https://connect.stripe.com/express/acct_1PgafTB7WZ01zgkW/ehJImT2clfHr"],
    )
    payout_account: PayoutAccountRead
