from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.fresh_rows import fresh_row
from payments_api.payout_accounts.models import PayoutAccount
from payments_api.payout_accounts.status import AccountState


def _state_values(state: AccountState) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "status_reason": state.status_reason,
        "charges_enabled": state.charges_enabled,
        "payouts_enabled": state.payouts_enabled,
        "details_submitted": state.details_submitted,
        "disabled_reason": state.disabled_reason,
        "requirements_currently_due": state.requirements_currently_due,
        "requirements_past_due": state.requirements_past_due,
        "requirements_pending_verification": state.requirements_pending_verification,
        # An object without the schedule (a thin event) keeps the one stored.
        **({"payout_schedule": state.payout_schedule} if state.payout_schedule else {}),
    }


class PayoutAccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_user(self, user_id: str, *, for_update: bool = False) -> PayoutAccount | None:
        where = PayoutAccount.user_id == user_id
        return await fresh_row(self.session, PayoutAccount, where, for_update=for_update)

    async def get_by_stripe_account(self, stripe_account_id: str) -> PayoutAccount | None:
        where = PayoutAccount.stripe_account_id == stripe_account_id
        return await fresh_row(self.session, PayoutAccount, where)

    async def insert_placeholder(self, user_id: str) -> None:
        """Insert the user's row (no Stripe account yet) unless it exists.

        A concurrent twin's INSERT waits on the unique index until this transaction
        ends, which is what serialises concurrent first calls.
        """
        await self.session.execute(
            insert(PayoutAccount)
            .values(user_id=user_id)
            .on_conflict_do_nothing(index_elements=[PayoutAccount.user_id])
        )

    async def adopt(
        self,
        user_id: str,
        state: AccountState,
        *,
        as_of: datetime,
        event_id: str,
        synced_at: datetime,
    ) -> bool:
        """Insert a row for an account Stripe knows as this user's but we never stored
        (we crashed between creating it and committing). False if a row exists."""
        result = await self.session.execute(
            insert(PayoutAccount)
            .values(
                user_id=user_id,
                stripe_account_id=state.stripe_account_id,
                stripe_state_at=as_of,
                last_event_id=event_id,
                synced_at=synced_at,
                **_state_values(state),
            )
            .on_conflict_do_nothing()
            .returning(PayoutAccount.id)
        )
        return result.scalar_one_or_none() is not None

    async def apply_state(
        self,
        row_id: int,
        state: AccountState,
        *,
        as_of: datetime,
        event_id: str | None,
        synced_at: datetime,
        attach: bool = False,
    ) -> bool:
        """Store Stripe's state unless newer state is already stored; True if stored.

        One conditional UPDATE, so a webhook and an API sync racing on the row can never
        let the older of the two win (the row lock orders them; the WHERE re-checks).
        """
        values = {
            **_state_values(state),
            "stripe_state_at": as_of,
            "last_event_id": event_id,
            "synced_at": synced_at,
            "updated_at": func.now(),
        }
        if attach:
            values["stripe_account_id"] = state.stripe_account_id
        stmt = (
            update(PayoutAccount)
            .where(
                PayoutAccount.id == row_id,
                or_(
                    PayoutAccount.stripe_state_at.is_(None),
                    PayoutAccount.stripe_state_at <= as_of,
                ),
            )
            .values(**values)
            .returning(PayoutAccount.id)
        )
        if not attach:
            stmt = stmt.where(PayoutAccount.stripe_account_id == state.stripe_account_id)
        result = await self.session.execute(stmt)
        return result.scalar_one_or_none() is not None

    async def mark_stale(self, user_id: str, stripe_account_id: str) -> None:
        """Make the next GET ask Stripe (after the payee comes back from onboarding)."""
        await self.session.execute(
            update(PayoutAccount)
            .where(
                PayoutAccount.user_id == user_id,
                PayoutAccount.stripe_account_id == stripe_account_id,
            )
            .values(synced_at=None)
        )
