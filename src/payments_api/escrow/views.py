"""How an escrow is named and shown: its public id and each viewer's side of it."""

from __future__ import annotations

from payments_api.escrow.errors import EscrowNotFound
from payments_api.escrow.models import (
    CaptureMethod,
    CaptureStatus,
    Escrow,
    EscrowFunding,
    EscrowStatus,
)
from payments_api.escrow.schemas import EscrowRead
from payments_api.kit.pagination import parse_public_id, public_id
from payments_api.users.models import User

ESCROW_PREFIX = "esc"


def is_admin(user: User) -> bool:
    return "admin" in (user.roles or [])


def escrow_read(escrow: Escrow, viewer: User | None) -> EscrowRead:
    """The escrow as ``viewer`` may see it: each party sees its own side of the money.
    No viewer is the whole escrow (admins, and outgoing events: the event feed of a
    party hides the other side again)."""
    admin = viewer is None or is_admin(viewer)
    customer_side = admin or (viewer is not None and viewer.id == escrow.customer_id)
    payee_side = admin or (viewer is not None and viewer.id == escrow.payee_id)
    return EscrowRead(
        id=public_id(ESCROW_PREFIX, escrow.id),
        status=EscrowStatus(escrow.status),
        funding=EscrowFunding(escrow.funding),
        capture_method=CaptureMethod(escrow.capture_method),
        capture_status=CaptureStatus(escrow.capture_status) if escrow.capture_status else None,
        authorized_amount=escrow.authorized_amount if customer_side else None,
        customer_id=escrow.customer_id,
        payee_id=escrow.payee_id,
        amount=escrow.price_amount,
        currency=escrow.currency,
        platform_fee_bps=escrow.platform_fee_bps if customer_side else None,
        platform_fee_amount=escrow.platform_fee_amount if customer_side else None,
        hold_amount=escrow.hold_amount if customer_side else None,
        service_fee_bps=escrow.service_fee_bps if payee_side else None,
        service_fee_amount=escrow.service_fee_amount if payee_side else None,
        payee_amount=escrow.payee_amount if payee_side else None,
        keeps_platform_fee_on_cancel=escrow.keeps_platform_fee_on_cancel,
        reference=escrow.reference,
        project_id=escrow.project_id,
        session_id=escrow.session_id,
        description=escrow.description,
        cancel_reason=escrow.cancel_reason,
        created_at=escrow.created_at,
        funded_at=escrow.funded_at,
        accepted_at=escrow.accepted_at,
        completed_at=escrow.completed_at,
        cancelled_at=escrow.cancelled_at,
    )


def parse_escrow_id(value: str) -> int:
    """``esc_12`` -> 12; anything else is a 404 (it cannot name an escrow)."""
    parsed = parse_public_id(ESCROW_PREFIX, value)
    if parsed is None:
        raise EscrowNotFound(f"No escrow {value!r}.")
    return parsed


def visible(escrow: Escrow, user: User) -> bool:
    """A party of the escrow or an admin (others get 404)."""
    return user.id in (escrow.customer_id, escrow.payee_id) or is_admin(user)
