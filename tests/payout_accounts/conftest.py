from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from payments_api.webhooks.registry import HandlerContext
from tests.factories import create_user
from tests.helpers import auth


@dataclass(frozen=True)
class Payee:
    id: str
    account_id: str
    headers: dict[str, str]


@pytest.fixture
async def payee(session: AsyncSession) -> Payee:
    """A payee known to the service (the row the first request would create)."""
    user = await create_user(session, id=f"payee_{uuid.uuid4().hex[:12]}", roles=["payee"])
    return Payee(
        id=user.id,
        account_id=f"acct_{uuid.uuid4().hex[:16]}",
        headers=auth(user.id, ["payee"]),
    )


@pytest.fixture
def handler_context(
    session: AsyncSession, gateway: StripeGateway, settings: Settings
) -> HandlerContext:
    return HandlerContext(session=session, stripe=gateway, settings=settings)
