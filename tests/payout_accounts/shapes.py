"""Stripe-shaped accounts (tests/fixtures/stripe), modified per scenario."""

from __future__ import annotations

import copy
import time
from typing import Any

from payments_api.webhooks.registry import StripeEvent
from tests.helpers import make_event, stripe_object

ONBOARDING_DUE = [
    "business_profile.url",
    "external_account",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]


def fresh_account(account_id: str, user_id: str, *, created: int | None = None) -> dict[str, Any]:
    """An Express account right after creation: nothing submitted, onboarding due.

    Stripe's example object as is (including ``disabled_reason: requirements.past_due``,
    which Stripe sets on every account that has not finished onboarding)."""
    account = copy.deepcopy(stripe_object("account"))
    account.update(
        id=account_id,
        type="express",
        created=int(time.time()) if created is None else created,
        metadata={"user_id": user_id},
        capabilities={"card_payments": "inactive", "transfers": "inactive"},
    )
    account["requirements"]["currently_due"] = list(ONBOARDING_DUE)
    account["requirements"]["eventually_due"] = list(ONBOARDING_DUE)
    return account


def enabled_account(account_id: str, user_id: str) -> dict[str, Any]:
    account = fresh_account(account_id, user_id)
    account.update(
        charges_enabled=True,
        payouts_enabled=True,
        details_submitted=True,
        capabilities={"card_payments": "active", "transfers": "active"},
    )
    account["requirements"].update(
        currently_due=[], eventually_due=[], past_due=[], disabled_reason=None
    )
    return account


def restricted_account(
    account_id: str, user_id: str, *, disabled_reason: str | None = "requirements.past_due"
) -> dict[str, Any]:
    account = enabled_account(account_id, user_id)
    account.update(charges_enabled=False, payouts_enabled=False)
    account["requirements"].update(
        currently_due=["individual.verification.document"],
        past_due=["individual.verification.document"],
        disabled_reason=disabled_reason,
    )
    return account


def under_review_account(account_id: str, user_id: str) -> dict[str, Any]:
    account = enabled_account(account_id, user_id)
    account.update(charges_enabled=False, payouts_enabled=False)
    account["requirements"].update(pending_verification=["individual.id_number"])
    return account


def account_link(url: str = "https://connect.stripe.com/setup/e/acct_x/abc") -> dict[str, Any]:
    link = copy.deepcopy(stripe_object("account_link"))
    now = int(time.time())
    link.update(url=url, created=now, expires_at=now + 300)
    return link


def login_link(url: str) -> dict[str, Any]:
    link = copy.deepcopy(stripe_object("login_link"))
    link.update(url=url, created=int(time.time()))
    return link


def account_updated(account: dict[str, Any], *, created: int) -> StripeEvent:
    """A Connect ``account.updated`` event as the webhook inbox hands it to handlers."""
    payload = make_event("account.updated", account, created=created, account=account["id"])
    return StripeEvent(
        id=payload["id"],
        type=payload["type"],
        created=payload["created"],
        livemode=payload["livemode"],
        account=payload["account"],
        data_object=payload["data"]["object"],
        payload=payload,
    )
