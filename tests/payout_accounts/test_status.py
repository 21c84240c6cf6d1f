"""The status table of docs/payout-accounts.md, row by row, on Stripe's account shapes."""

from __future__ import annotations

from typing import Any

import pytest

from payments_api.payout_accounts.status import account_state
from payments_api.stripe.objects import Account
from tests.payout_accounts import shapes

ACCT, USER = "acct_status", "user_status"


def _with(account: dict[str, Any], **requirements: Any) -> dict[str, Any]:
    account["requirements"].update(requirements)
    return account


def _fresh_without_disabled_reason() -> dict[str, Any]:
    return _with(shapes.fresh_account(ACCT, USER), disabled_reason=None)


def _submitted_waiting_for_capabilities() -> dict[str, Any]:
    account = shapes.enabled_account(ACCT, USER)
    account.update(charges_enabled=False, payouts_enabled=False)
    return account


def _fresh_under_verification() -> dict[str, Any]:
    return _with(
        shapes.fresh_account(ACCT, USER),
        currently_due=[],
        pending_verification=["individual.id_number"],
        disabled_reason="requirements.pending_verification",
    )


def _fresh_rejected() -> dict[str, Any]:
    return _with(shapes.fresh_account(ACCT, USER), disabled_reason="rejected.terms_of_service")


def _enabled_with_new_requirements() -> dict[str, Any]:
    return _with(shapes.enabled_account(ACCT, USER), currently_due=["company.tax_id"])


def _past_due_without_disabled_reason() -> dict[str, Any]:
    return shapes.restricted_account(ACCT, USER, disabled_reason=None)


def _fresh_nothing_due() -> dict[str, Any]:
    return _with(shapes.fresh_account(ACCT, USER), currently_due=[], disabled_reason=None)


class TestAccountState:
    @pytest.mark.parametrize(
        ("account", "status", "reason"),
        [
            (shapes.fresh_account(ACCT, USER), "pending", "requirements_due"),
            (_fresh_without_disabled_reason(), "pending", "requirements_due"),
            (_fresh_under_verification(), "pending", "under_review"),
            (_fresh_nothing_due(), "pending", "details_submitted_false"),
            (_fresh_rejected(), "restricted", "rejected.terms_of_service"),
            (shapes.restricted_account(ACCT, USER), "restricted", "requirements.past_due"),
            (
                shapes.restricted_account(ACCT, USER, disabled_reason="rejected.fraud"),
                "restricted",
                "rejected.fraud",
            ),
            (_past_due_without_disabled_reason(), "restricted", "requirements_past_due"),
            (shapes.enabled_account(ACCT, USER), "enabled", None),
            (_enabled_with_new_requirements(), "pending", "requirements_due"),
            (shapes.under_review_account(ACCT, USER), "pending", "under_review"),
            (_submitted_waiting_for_capabilities(), "pending", "capabilities_pending"),
        ],
    )
    def test_status_table(self, account: dict[str, Any], status: str, reason: str | None) -> None:
        state = account_state(Account.model_validate(account))
        assert state.status.value == status
        assert state.status_reason == reason
        assert state.stripe_account_id == ACCT

    def test_stripe_example_object_as_published(self) -> None:
        from tests.helpers import stripe_object

        state = account_state(Account.model_validate(stripe_object("account")))
        assert state.status.value == "pending"
        assert state.status_reason == "requirements_due"
        assert state.disabled_reason == "requirements.past_due"
        assert "external_account" in state.requirements_currently_due

    def test_missing_requirements_are_empty_lists(self) -> None:
        state = account_state(Account.model_validate({"id": ACCT, "object": "account"}))
        assert state.requirements_currently_due == []
        assert state.requirements_past_due == []
        assert state.status.value == "pending"
        assert state.status_reason == "details_submitted_false"
