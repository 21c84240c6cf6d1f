"""``payments-api reconcile``: a run from the command line (cron, an operator's shell)."""

from __future__ import annotations

from datetime import date

from payments_api.reconciliation.schemas import ReconciliationRunRead
from payments_api.settings import Settings

EXIT_CLEAN, EXIT_MISMATCHES, EXIT_FAILED = 0, 1, 2


async def reconcile(settings: Settings, day: date | None) -> ReconciliationRunRead:
    """Reconcile ``day`` (default: yesterday, UTC) with the service's own resources."""
    from payments_api.db import create_engine, create_sessionmaker, resolve_database_url
    from payments_api.reconciliation.service import ReconciliationService
    from payments_api.stripe.gateway import StripeGateway

    engine = create_engine(resolve_database_url(settings), settings)
    stripe = StripeGateway(settings)
    try:
        service = ReconciliationService(create_sessionmaker(engine), stripe, settings)
        return await service.run(day or service.yesterday(), trigger="cli", actor_id="cli")
    finally:
        await stripe.aclose()
        await engine.dispose()
