from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from payments_api.deps import PrincipalDep, StateDep
from payments_api.subscriptions.service import SubscriptionService


async def get_subscription_service(state: StateDep, principal: PrincipalDep) -> SubscriptionService:
    # No request-wide transaction: the service commits before calling Stripe.
    return SubscriptionService(state.sessionmaker, state.stripe, state.settings, principal)


SubscriptionServiceDep = Annotated[SubscriptionService, Depends(get_subscription_service)]
