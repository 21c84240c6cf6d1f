"""From Stripe's account object to our payout-account status (docs/payout-accounts.md).

Pure functions: no database, no network, so the table is tested row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


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


def account_state(account: dict[str, Any]) -> AccountState:
    """Read a Stripe ``account`` object (API response or ``event.data.object``)."""
    requirements = account.get("requirements") or {}
    disabled_reason = requirements.get("disabled_reason") or None
    currently_due = _strings(requirements.get("currently_due"))
    past_due = _strings(requirements.get("past_due"))
    pending_verification = _strings(requirements.get("pending_verification"))
    charges_enabled = bool(account.get("charges_enabled"))
    payouts_enabled = bool(account.get("payouts_enabled"))
    details_submitted = bool(account.get("details_submitted"))
    status, reason = derive_status(
        charges_enabled=charges_enabled,
        payouts_enabled=payouts_enabled,
        details_submitted=details_submitted,
        disabled_reason=disabled_reason,
        currently_due=currently_due,
        past_due=past_due,
        pending_verification=pending_verification,
    )
    return AccountState(
        stripe_account_id=str(account["id"]),
        status=status,
        status_reason=reason,
        charges_enabled=charges_enabled,
        payouts_enabled=payouts_enabled,
        details_submitted=details_submitted,
        disabled_reason=disabled_reason,
        requirements_currently_due=currently_due,
        requirements_past_due=past_due,
        requirements_pending_verification=pending_verification,
        payout_schedule=_payout_schedule(account),
    )


def _payout_schedule(account: dict[str, Any]) -> dict[str, Any] | None:
    settings = account.get("settings")
    payouts = settings.get("payouts") if isinstance(settings, dict) else None
    schedule = payouts.get("schedule") if isinstance(payouts, dict) else None
    if not isinstance(schedule, dict):
        return None
    keep = ("interval", "delay_days", "weekly_anchor", "monthly_anchor")
    return {k: schedule[k] for k in keep if schedule.get(k) is not None}
