from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from payments_api.deps import StateDep
from payments_api.reconciliation.service import ReconciliationService


async def get_reconciliation_service(state: StateDep) -> ReconciliationService:
    return ReconciliationService(state.sessionmaker, state.stripe, state.settings)


ReconciliationServiceDep = Annotated[ReconciliationService, Depends(get_reconciliation_service)]
