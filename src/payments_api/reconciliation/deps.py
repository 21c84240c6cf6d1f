from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from payments_api.auth import Principal
from payments_api.deps import PrincipalDep, StateDep
from payments_api.problems import Forbidden
from payments_api.reconciliation.service import ReconciliationService


def admin_principal(principal: PrincipalDep) -> Principal:
    """The admin role from the token alone: a run reads Stripe, so the request must not
    hold a database transaction open meanwhile."""
    if not principal.has_role("admin"):
        raise Forbidden("This action requires one of the roles: admin.")
    return principal


AdminPrincipalDep = Annotated[Principal, Depends(admin_principal)]


def get_reconciliation_service(state: StateDep) -> ReconciliationService:
    return ReconciliationService(state.sessionmaker, state.stripe, state.settings)


ReconciliationServiceDep = Annotated[ReconciliationService, Depends(get_reconciliation_service)]
