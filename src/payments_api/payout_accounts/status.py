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
    """What we keep of a Stripe account, with the status derived from it."""

    stripe_account_id: str
    status: PayoutAccountStatus
    status_reason: str | None
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


def derive_status(
    *,
    charges_enabled: bool,
    payouts_enabled: bool,
    details_submitted: bool,
    disabled_reason: str | None,
    currently_due: list[str],
    past_due: list[str],
    pending_verification: list[str],
) -> tuple[PayoutAccountStatus, str | None]:
    """The status table; the first matching row wins."""
    onboarding = not details_submitted and (
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
    if charges_enabled and payouts_enabled and not currently_due:
        return PayoutAccountStatus.enabled, None
    if currently_due:
        return PayoutAccountStatus.pending, StatusReason.requirements_due.value
    if pending_verification:
        return PayoutAccountStatus.pending, StatusReason.under_review.value
    return PayoutAccountStatus.pending, StatusReason.capabilities_pending.value


def account_state(account: Account) -> AccountState:
    """Read a Stripe ``account`` object (API response or ``event.data.object``)."""
    requirements = account.requirements or AccountRequirements()
    disabled_reason = requirements.disabled_reason or None
    currently_due = list(requirements.currently_due)
    past_due = list(requirements.past_due)
    pending_verification = list(requirements.pending_verification)
    status, reason = derive_status(
        charges_enabled=account.charges_enabled,
        payouts_enabled=account.payouts_enabled,
        details_submitted=account.details_submitted,
        disabled_reason=disabled_reason,
        currently_due=currently_due,
        past_due=past_due,
        pending_verification=pending_verification,
    )
    return AccountState(
        stripe_account_id=account.id,
        status=status,
        status_reason=reason,
        charges_enabled=account.charges_enabled,
        payouts_enabled=account.payouts_enabled,
        details_submitted=account.details_submitted,
        disabled_reason=disabled_reason,
        requirements_currently_due=currently_due,
        requirements_past_due=past_due,
        requirements_pending_verification=pending_verification,
        payout_schedule=_payout_schedule(account),
    )


def _payout_schedule(account: Account) -> dict[str, Any] | None:
    payouts = account.settings.payouts if account.settings else None
    schedule = payouts.schedule if payouts else None
    if schedule is None:
        return None
    keep = ("interval", "delay_days", "weekly_anchor", "monthly_anchor")
    return {k: schedule[k] for k in keep if schedule.get(k) is not None}
