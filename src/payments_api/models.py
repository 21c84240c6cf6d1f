"""Every table's model, imported in one place so alembic sees the whole schema."""

from payments_api.audit.models import AuditLogEntry
from payments_api.checkout import models as checkout_models
from payments_api.db import Base
from payments_api.disputes import models as disputes_models
from payments_api.earnings import models as earnings_models
from payments_api.escrow import models as escrow_models
from payments_api.events import models as events_models
from payments_api.idempotency import models as idempotency_models
from payments_api.installation import Installation
from payments_api.ledger.models import (
    LedgerAccount,
    LedgerBalance,
    LedgerPosting,
    LedgerTransaction,
)
from payments_api.orders import models as orders_models
from payments_api.orders import refund_models as refunds_models
from payments_api.payment_methods import models as payment_methods_models
from payments_api.payout_accounts import models as payout_accounts_models
from payments_api.payouts import models as payouts_models
from payments_api.projects import models as projects_models
from payments_api.reconciliation import models as reconciliation_models
from payments_api.refunds import escrow_refund_models as escrow_refunds_models
from payments_api.refunds import invoice_models as invoice_refunds_models
from payments_api.subscriptions import models as subscriptions_models
from payments_api.topups import models as topups_models
from payments_api.users.models import User
from payments_api.webhooks import models as webhooks_models

# Domain modules are imported for their side effect of declaring tables on Base.
DOMAIN_MODELS = (
    checkout_models,
    disputes_models,
    earnings_models,
    escrow_models,
    escrow_refunds_models,
    events_models,
    idempotency_models,
    invoice_refunds_models,
    orders_models,
    payment_methods_models,
    payout_accounts_models,
    payouts_models,
    projects_models,
    reconciliation_models,
    refunds_models,
    subscriptions_models,
    topups_models,
    webhooks_models,
)

__all__ = [
    "DOMAIN_MODELS",
    "AuditLogEntry",
    "Base",
    "Installation",
    "LedgerAccount",
    "LedgerBalance",
    "LedgerPosting",
    "LedgerTransaction",
    "User",
]
