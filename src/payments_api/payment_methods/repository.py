from __future__ import annotations

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.payment_methods.models import AutoReload, PaymentMethod, PaymentMethodSetup
from payments_api.users.models import User


class PaymentMethodRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_user(self, user_id: str) -> None:
        """Serialise changes to one user's cards (default flag, duplicates)."""
        await self.session.execute(select(User.id).where(User.id == user_id).with_for_update())

    async def setup_by_key(self, user_id: str, idempotency_key: str) -> PaymentMethodSetup | None:
        result: PaymentMethodSetup | None = await self.session.scalar(
            select(PaymentMethodSetup).where(
                PaymentMethodSetup.user_id == user_id,
                PaymentMethodSetup.idempotency_key == idempotency_key,
            )
        )
        return result

    async def get_for_user(
        self, user_id: str, number: int, *, for_update: bool = False
    ) -> PaymentMethod | None:
        return await self._card(
            PaymentMethod.user_id == user_id, PaymentMethod.id == number, for_update=for_update
        )

    async def get(self, number: int) -> PaymentMethod | None:
        return await self.session.get(PaymentMethod, number)

    async def by_stripe_id(self, stripe_id: str) -> PaymentMethod | None:
        return await self._card(PaymentMethod.stripe_payment_method_id == stripe_id)

    async def active_by_fingerprint(self, user_id: str, fingerprint: str) -> PaymentMethod | None:
        return await self._card(
            PaymentMethod.user_id == user_id,
            PaymentMethod.fingerprint == fingerprint,
            PaymentMethod.status == "active",
        )

    async def default_for(self, user_id: str) -> PaymentMethod | None:
        return await self._card(
            PaymentMethod.user_id == user_id, PaymentMethod.is_default.is_(True)
        )

    async def _card(
        self, *conditions: ColumnElement[bool], for_update: bool = False
    ) -> PaymentMethod | None:
        """The card meeting ``conditions`` (they name at most one)."""
        stmt = select(PaymentMethod).where(*conditions)
        if for_update:
            stmt = stmt.with_for_update()
        card: PaymentMethod | None = await self.session.scalar(stmt)
        return card

    async def active(self, user_id: str) -> list[PaymentMethod]:
        rows = await self.session.scalars(
            select(PaymentMethod)
            .where(PaymentMethod.user_id == user_id, PaymentMethod.status == "active")
            .order_by(PaymentMethod.id.desc())
        )
        return list(rows)

    async def clear_default(self, user_id: str) -> None:
        await self.session.execute(
            update(PaymentMethod)
            .where(PaymentMethod.user_id == user_id, PaymentMethod.is_default.is_(True))
            .values(is_default=False)
        )

    async def set_auto_reload(
        self, user_id: str, currency: str, threshold: int, amount: int, enabled: bool
    ) -> AutoReload:
        """Create or change; a change re-arms it (``below`` false: the next fall
        below the new threshold tops up)."""
        values = {"threshold": threshold, "amount": amount, "enabled": enabled, "below": False}
        stmt = (
            insert(AutoReload)
            .values(user_id=user_id, currency=currency, **values)
            .on_conflict_do_update(
                index_elements=[AutoReload.user_id, AutoReload.currency],
                set_={**values, "updated_at": func.now()},
            )
            .returning(AutoReload)
            .execution_options(populate_existing=True)
        )
        row: AutoReload = (await self.session.scalars(stmt)).one()
        return row

    async def auto_reloads(self, user_id: str) -> list[AutoReload]:
        rows = await self.session.scalars(
            select(AutoReload).where(AutoReload.user_id == user_id).order_by(AutoReload.currency)
        )
        return list(rows)
