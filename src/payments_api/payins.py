"""The one place pay-in purposes are wired (``orders/purposes.py`` says what a purpose
is). Called by the app factory and the job worker; registering twice is a no-op.

A new purpose: its module in its own domain, and one line here.
"""

from __future__ import annotations

from payments_api.escrow.payin import EscrowPurpose
from payments_api.orders.catalog import CatalogPurpose
from payments_api.orders.purposes import PURPOSES, PurposeRegistry
from payments_api.projects.direct import DirectPurpose
from payments_api.topups.payin import TopupPurpose

_TOPUP = TopupPurpose()
_CATALOG = CatalogPurpose()
_ESCROW = EscrowPurpose()
_DIRECT = DirectPurpose()


def wire_purposes(registry: PurposeRegistry = PURPOSES) -> PurposeRegistry:
    registry.register(_TOPUP)
    registry.register(_CATALOG)
    registry.register(_ESCROW)
    registry.register(_DIRECT)
    return registry
