from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from payments_api.deps import PrincipalDep, StateDep
from payments_api.orders.service import PayInService


def get_payin_service(state: StateDep, principal: PrincipalDep) -> PayInService:
    # No request-wide transaction here: the service commits its pending row before
    # calling Stripe and records the result in a second short transaction.
    return PayInService(state.sessionmaker, state.stripe, state.settings, principal)


PayInServiceDep = Annotated[PayInService, Depends(get_payin_service)]
