"""``account.updated`` applied directly, as the Connect endpoint's dispatch calls it."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.payout_accounts.models import PayoutAccount
from payments_api.payout_accounts.service import ConnectService
from payments_api.payout_accounts.webhook_handlers import HANDLERS
from payments_api.stripe.objects import Account, MalformedStripeObject
from payments_api.webhooks.registry import HandlerContext
from tests.factories import create_user, emitted
from tests.payout_accounts import shapes
from tests.payout_accounts.conftest import Payee


async def _row(session: AsyncSession, user_id: str) -> PayoutAccount | None:
    row: PayoutAccount | None = await session.scalar(
        select(PayoutAccount)
        .where(PayoutAccount.user_id == user_id)
        .execution_options(populate_existing=True)
    )
    return row


class TestAccountUpdated:
    def test_is_registered_for_account_updated(self) -> None:
        assert list(HANDLERS) == ["account.updated"]

    async def test_adopts_our_account_that_was_never_stored(
        self, session: AsyncSession, handler_context: HandlerContext, payee: Payee
    ) -> None:
        # We crashed after Stripe created the account and before our commit.
        event = shapes.account_updated(
            shapes.enabled_account(payee.account_id, payee.id), created=int(time.time())
        )
        await HANDLERS["account.updated"](event, handler_context)
        row = await _row(session, payee.id)
        assert row is not None
        assert row.stripe_account_id == payee.account_id
        assert row.status == "enabled"
        assert row.stripe_state_at is not None
        assert int(row.stripe_state_at.timestamp()) == event.created

    async def test_keeps_the_payout_schedule_a_withdrawal_arrival_is_estimated_from(
        self, session: AsyncSession, handler_context: HandlerContext, payee: Payee
    ) -> None:
        account = shapes.enabled_account(payee.account_id, payee.id)
        account["settings"]["payouts"]["schedule"] = {
            "interval": "weekly",
            "delay_days": 4,
            "weekly_anchor": "friday",
        }
        await HANDLERS["account.updated"](
            shapes.account_updated(account, created=int(time.time())), handler_context
        )
        row = await _row(session, payee.id)
        assert row is not None
        assert row.payout_schedule == {
            "interval": "weekly",
            "delay_days": 4,
            "weekly_anchor": "friday",
        }
        # A later object without settings (a thin payload) keeps the stored schedule.
        thin = shapes.enabled_account(payee.account_id, payee.id)
        thin.pop("settings")
        await HANDLERS["account.updated"](
            shapes.account_updated(thin, created=int(time.time()) + 5), handler_context
        )
        row = await _row(session, payee.id)
        assert row is not None
        assert row.payout_schedule is not None
        assert row.payout_schedule["delay_days"] == 4

    async def test_ignores_accounts_that_are_not_ours(
        self, session: AsyncSession, handler_context: HandlerContext
    ) -> None:
        account = shapes.enabled_account(f"acct_{uuid.uuid4().hex[:10]}", "nobody")
        account["metadata"] = {}
        await HANDLERS["account.updated"](
            shapes.account_updated(account, created=1), handler_context
        )
        unknown_user = shapes.enabled_account(f"acct_{uuid.uuid4().hex[:10]}", "no-such-user")
        await HANDLERS["account.updated"](
            shapes.account_updated(unknown_user, created=1), handler_context
        )
        for account_id in (account["id"], unknown_user["id"]):
            found = await session.scalar(
                select(PayoutAccount).where(PayoutAccount.stripe_account_id == account_id)
            )
            assert found is None

    async def test_a_second_account_never_replaces_the_stored_one(
        self, session: AsyncSession, handler_context: HandlerContext, payee: Payee
    ) -> None:
        service = ConnectService(session, handler_context.stripe, handler_context.settings)
        first = shapes.fresh_account(payee.account_id, payee.id)
        assert await service.apply_account_event(
            event_id="evt_1", created=int(time.time()), account=Account.model_validate(first)
        )
        stray = shapes.enabled_account("acct_stray", payee.id)
        assert not await service.apply_account_event(
            event_id="evt_2", created=int(time.time()) + 1, account=Account.model_validate(stray)
        )
        row = await _row(session, payee.id)
        assert row is not None
        assert row.stripe_account_id == payee.account_id
        assert row.status == "pending"

    async def test_older_event_is_acknowledged_and_changes_nothing(
        self, session: AsyncSession, handler_context: HandlerContext, payee: Payee
    ) -> None:
        service = ConnectService(session, handler_context.stripe, handler_context.settings)
        t = int(time.time())
        enabled = shapes.enabled_account(payee.account_id, payee.id)
        assert await service.apply_account_event(
            event_id="evt_new", created=t, account=Account.model_validate(enabled)
        )
        fresh = shapes.fresh_account(payee.account_id, payee.id)
        assert not await service.apply_account_event(
            event_id="evt_old", created=t - 1, account=Account.model_validate(fresh)
        )
        row = await _row(session, payee.id)
        assert row is not None
        assert row.status == "enabled"
        assert row.last_event_id == "evt_new"

    async def test_replaying_the_same_event_is_harmless(
        self, session: AsyncSession, handler_context: HandlerContext, payee: Payee
    ) -> None:
        event = shapes.account_updated(
            shapes.restricted_account(payee.account_id, payee.id), created=int(time.time())
        )
        await HANDLERS["account.updated"](event, handler_context)
        await HANDLERS["account.updated"](event, handler_context)
        row = await _row(session, payee.id)
        assert row is not None
        assert row.status == "restricted"
        assert row.status_reason == "requirements.past_due"
        [(kind, payload)] = await emitted(session, payee.id)
        assert (kind, payload["status"]) == ("payout_account.updated", "restricted")

    async def test_event_account_must_match_the_object(
        self, session: AsyncSession, handler_context: HandlerContext
    ) -> None:
        user = await create_user(session, roles=["payee"])
        account = shapes.enabled_account("acct_object", user.id)
        event = shapes.account_updated(account, created=int(time.time()))
        forged = type(event)(
            id=event.id,
            type=event.type,
            created=event.created,
            livemode=event.livemode,
            account="acct_someone_else",
            data_object=event.data_object,
            payload=event.payload,
        )
        await HANDLERS["account.updated"](forged, handler_context)
        assert await _row(session, user.id) is None

    async def test_a_malformed_account_is_refused_before_any_write(
        self, session: AsyncSession, handler_context: HandlerContext
    ) -> None:
        # The inbox records MalformedStripeObject as a failure it does not retry.
        user = await create_user(session, roles=["payee"])
        account = shapes.enabled_account("acct_malformed", user.id)
        account["charges_enabled"] = {"not": "a bool"}
        event = shapes.account_updated(account, created=int(time.time()))
        with pytest.raises(MalformedStripeObject, match="charges_enabled"):
            await HANDLERS["account.updated"](event, handler_context)
        assert await _row(session, user.id) is None
