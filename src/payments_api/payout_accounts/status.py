"""From Stripe's account object to our payout-account status (docs/payout-accounts.md).

Pure functions: no database, no network, so the table is tested row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from payments_api.stripe.objects import Account, AccountRequirements


class PayoutAccountStatus(StrEnum):
    not_started = "not_started"
    pending = "pending"
    enabled = "enabled"
    restricted = "restricted"


class StatusReason(StrEnum):
    """Our own reason codes; Stripe's ``disabled_reason`` is passed through verbatim."""

    requirements_due = "requirements_due"
    requirements_past_due = "requirements_past_due"
    under_review = "under_review"
    details_submitted_false = "details_submitted_false"
    capabilities_pending = "capabilities_pending"


# disabled_reason values Stripe sets on every fresh account until the payee finishes
# onboarding: they mean "we are waiting for the payee", not "something went wrong",
# so before details are submitted they leave the account pending (see the docs table).
ONBOARDING_DISABLED_REASONS = frozenset(
    {
        "requirements.past_due",
        "requirements.pending_verification",
        "action_required.requested_capabilities",
    }
)


@dataclass(frozen=True, slots=True)
class AccountState:
    """What we keep of a Stripe account; its status is derived from it (the table of
    ``status_and_reason``)."""

    stripe_account_id: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    disabled_reason: str | None
    requirements_currently_due: list[str]
    requirements_past_due: list[str]
    requirements_pending_verification: list[str]
    payout_schedule: dict[str, Any] | None = None
    """Stripe's ``settings.payouts.schedule`` (interval, delay_days, anchors), verbatim;
    None when the object did not carry it."""

    @property
    def status(self) -> PayoutAccountStatus:
        return self.status_and_reason()[0]

    @property
    def status_reason(self) -> str | None:
        return self.status_and_reason()[1]

    def status_and_reason(self) -> tuple[PayoutAccountStatus, str | None]:
        """The status table; the first matching row wins."""
        disabled_reason = self.disabled_reason
        currently_due = self.requirements_currently_due
        past_due = self.requirements_past_due
        pending_verification = self.requirements_pending_verification
        onboarding = not self.details_submitted and (
            disabled_reason is None or disabled_reason in ONBOARDING_DISABLED_REASONS
        )
        if onboarding:
            if currently_due or past_due:
                return PayoutAccountStatus.pending, StatusReason.requirements_due.value
            if pending_verification:
                return PayoutAccountStatus.pending, StatusReason.under_review.value
            return PayoutAccountStatus.pending, StatusReason.details_submitted_false.value
        if disabled_reason or past_due:
            return (
                PayoutAccountStatus.restricted,
                disabled_reason or StatusReason.requirements_past_due.value,
            )
        if self.charges_enabled and self.payouts_enabled and not currently_due:
            return PayoutAccountStatus.enabled, None
        if currently_due:
            return PayoutAccountStatus.pending, StatusReason.requirements_due.value
        if pending_verification:
            return PayoutAccountStatus.pending, StatusReason.under_review.value
        return PayoutAccountStatus.pending, StatusReason.capabilities_pending.value


def account_state(account: Account) -> AccountState:
    """Read a Stripe ``account`` object (API response or ``event.data.object``)."""
    requirements = account.requirements or AccountRequirements()
    return AccountState(
        stripe_account_id=account.id,
        charges_enabled=account.charges_enabled,
        payouts_enabled=account.payouts_enabled,
        details_submitted=account.details_submitted,
        disabled_reason=requirements.disabled_reason or None,
        requirements_currently_due=list(requirements.currently_due),
        requirements_past_due=list(requirements.past_due),
        requirements_pending_verification=list(requirements.pending_verification),
        payout_schedule=_payout_schedule(account),
    )


def _payout_schedule(account: Account) -> dict[str, Any] | None:
    payouts = account.settings.payouts if account.settings else None
    schedule = payouts.schedule if payouts else None
    if schedule is None:
        return None
    keep = ("interval", "delay_days", "weekly_anchor", "monthly_anchor")
    return {k: schedule[k] for k in keep if schedule.get(k) is not None}
