"""The sandbox's admin page (``/sandbox/``, also ``/sandbox/admin``): Stripe's side of
things. Open a dispute on a charge and win or lose it, pay or fail a payout, reverse a
transfer, fail a refund, expire a session or an authorization, advance a test clock, and
see (and resend) every event delivered to the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response

from payments_sandbox import events as sandbox_events
from payments_sandbox.html import money, page
from payments_sandbox.page_kit import (
    account_status,
    act,
    chosen,
    form_of,
    not_found,
    refused,
    see_other,
)
from payments_sandbox.params import Params
from payments_sandbox.repository import EventRepository, ObjectRepository
from payments_sandbox.service import PageError, SandboxStripe
from payments_sandbox.wiring import sessionmaker_of, settings_of

router = APIRouter(prefix="/sandbox")
T = TypeVar("T")

DISPUTE_REASONS = ("fraudulent", "product_not_received", "duplicate", "general")


@dataclass(frozen=True)
class Cell:
    """One table cell: text (the template escapes it), shown as code for Stripe ids."""

    text: Any
    code: bool = False


def _amount(body: dict[str, Any], field: str = "amount") -> Cell:
    return Cell(money(body.get(field), body.get("currency")))


Cells = Callable[[dict[str, Any]], list[Cell]]


def _field(name: str, *, code: bool = False) -> Callable[[dict[str, Any]], Cell]:
    return lambda body: Cell(body.get(name), code=code)


Section = tuple[str, str, list[str], Cells]
"""(Stripe object type, section title, column headers after the id, the row's cells)"""


def _amount_status(
    type_: str,
    title: str,
    headers: tuple[str, str],
    last: Callable[[dict[str, Any]], Cell],
    amount: str = "amount",
) -> Section:
    """A section showing the amount, the status and one more column (``headers``: the id's
    and that column's)."""
    return (
        type_,
        title,
        [headers[0], "Amount", "Status", headers[1]],
        lambda body: [_amount(body, amount), Cell(body["status"]), last(body)],
    )


def _refunded_disputed(body: dict[str, Any]) -> Cell:
    refunded = money(body.get("amount_refunded"), body.get("currency"))
    return Cell(f"{refunded} / {body.get('disputed')}")


_CHARGE = _field("charge", code=True)

ADMIN_SECTIONS: list[Section] = [
    _amount_status(
        "checkout.session",
        "Checkout Sessions",
        ("Session", "Payment"),
        _field("payment_status"),
        "amount_total",
    ),
    _amount_status(
        "payment_intent", "PaymentIntents", ("PaymentIntent", "Metadata"), _field("metadata")
    ),
    _amount_status("charge", "Charges", ("Charge", "Refunded / disputed"), _refunded_disputed),
    _amount_status("dispute", "Disputes", ("Dispute", "Charge"), _CHARGE),
    _amount_status("refund", "Refunds", ("Refund", "Charge"), _CHARGE),
    (
        "account",
        "Connected accounts (Express)",
        ["Account", "Status", "Charges / payouts", "Metadata"],
        lambda b: [
            Cell(account_status(b)),
            Cell(f"{b.get('charges_enabled')} / {b.get('payouts_enabled')}"),
            Cell(b.get("metadata")),
        ],
    ),
    (
        "transfer",
        "Transfers",
        ["Transfer", "Amount", "Destination", "Reversed"],
        lambda b: [_amount(b), Cell(b["destination"], code=True), _amount(b, "amount_reversed")],
    ),
    _amount_status(
        "payout", "Payouts (connected accounts)", ("Payout", "Arrival"), _field("arrival_date")
    ),
]


@router.get("/")
@router.get("/admin")
async def admin_page(request: Request, error: str | None = None) -> Response:
    settings = settings_of(request)
    async with sessionmaker_of(request)() as session:
        objects = ObjectRepository(session)
        sections = [
            {
                "title": title,
                "anchor": title.split()[0].lower(),
                "headers": headers,
                "rows": [(row, cells(row.body)) for row in await objects.recent([type_], 25)],
            }
            for type_, title, headers, cells in ADMIN_SECTIONS
        ]
        events = await EventRepository(session).recent(40)
        platform = await SandboxStripe(session, settings).balance()
    return page(
        "admin.html",
        "Stripe sandbox",
        error=error,
        base=settings.public_base_url.rstrip("/"),
        platform_balances=[money(b["amount"], b["currency"]) for b in platform["available"]],
        sections=sections,
        events=events,
        dispute_reasons=DISPUTE_REASONS,
    )


async def _admin(request: Request, action: Callable[[SandboxStripe], Awaitable[Any]]) -> Response:
    try:
        await act(request, action)
    except PageError as exc:
        return refused("Stripe sandbox", exc, "/sandbox/")
    return see_other("/sandbox/")


def _optional_int(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise PageError(f"{value!r} is not an amount in minor units.")
    return int(value)


@router.post("/admin/charges/{charge_id}/dispute")
async def admin_open_dispute(request: Request, charge_id: str) -> Response:
    form = await form_of(request)
    try:
        amount = _optional_int(form.get("amount"))
    except PageError as exc:
        return refused("Stripe sandbox", exc, "/sandbox/")
    reason = form.get("reason") or "fraudulent"
    return await _admin(request, lambda s: s.open_dispute(charge_id, amount, reason))


async def _admin_outcome(
    request: Request,
    outcomes: Mapping[str, T],
    action: Callable[[SandboxStripe, T], Awaitable[Any]],
) -> Response:
    """An admin action with the outcome the form chose, one of ``outcomes``."""
    try:
        unknown = f"Choose {' or '.join(outcomes)}."
        outcome = await chosen(request, outcomes, field="outcome", unknown=unknown)
    except PageError as exc:
        return refused("Stripe sandbox", exc, "/sandbox/")
    return await _admin(request, lambda s: action(s, outcome))


_DISPUTE_OUTCOMES: dict[str, Literal["won", "lost"]] = {"won": "won", "lost": "lost"}
_PAYOUT_OUTCOMES: dict[str, Literal["paid", "failed"]] = {"paid": "paid", "failed": "failed"}


@router.post("/admin/disputes/{dispute_id}/close")
async def admin_close_dispute(request: Request, dispute_id: str) -> Response:
    return await _admin_outcome(
        request, _DISPUTE_OUTCOMES, lambda s, outcome: s.close_dispute(dispute_id, outcome)
    )


@router.post("/admin/payouts/{payout_id}")
async def admin_settle_payout(request: Request, payout_id: str) -> Response:
    return await _admin_outcome(
        request, _PAYOUT_OUTCOMES, lambda s, outcome: s.settle_payout(payout_id, outcome)
    )


@router.post("/admin/transfers/{transfer_id}/reverse")
async def admin_reverse_transfer(request: Request, transfer_id: str) -> Response:
    form = await form_of(request)
    amount = (form.get("amount") or "").strip()
    params = Params({"amount": amount} if amount else {})
    return await _admin(request, lambda s: s.reverse_transfer(transfer_id, params))


@router.post("/test-clocks/{clock_id}/advance")
async def advance_test_clock(request: Request, clock_id: str) -> Response:
    """Move a customer's test clock to ``frozen_time`` (Unix seconds): every renewal,
    trial end and cancel at period end due by then happens, with its events."""
    from payments_sandbox.billing import SandboxBilling

    try:
        frozen_time = _optional_int((await form_of(request)).get("frozen_time"))
        if frozen_time is None:
            raise PageError("Give frozen_time, Unix seconds.")
    except PageError as exc:
        return refused("Stripe sandbox", exc, "/sandbox/")
    return await _admin(request, lambda s: SandboxBilling(s).advance_clock(clock_id, frozen_time))


@router.post("/admin/refunds/{refund_id}/fail")
async def admin_fail_refund(request: Request, refund_id: str) -> Response:
    return await _admin(request, lambda s: s.fail_refund(refund_id))


@router.post("/admin/checkout/{session_id}/expire")
async def admin_expire_checkout(request: Request, session_id: str) -> Response:
    return await _admin(request, lambda s: s.expire_checkout_session(session_id))


@router.post("/admin/accounts/{account_id}/onboard")
async def admin_onboarding_link(request: Request, account_id: str) -> Response:
    """An onboarding link made from the sandbox itself (returns to this page)."""
    back = f"{settings_of(request).public_base_url.rstrip('/')}/sandbox/"
    params = Params(
        {
            "account": account_id,
            "type": "account_onboarding",
            "refresh_url": back,
            "return_url": back,
        }
    )
    try:
        link = await act(request, lambda s: s.create_account_link(params))
    except PageError as exc:
        return refused("Stripe sandbox", exc, "/sandbox/")
    return see_other(str(link["url"]))


@router.post("/admin/events/{event_id}/resend")
async def admin_resend_event(request: Request, event_id: str) -> Response:
    if not await sandbox_events.resend(sessionmaker_of(request), event_id):
        return not_found("event")
    return see_other("/sandbox/#events")


@router.post("/admin/payment_intents/{intent_id}/expire_authorization")
async def admin_expire_authorization(request: Request, intent_id: str) -> Response:
    """Stripe's capture window passing, on demand: ``payment_intent.canceled``
    (``cancellation_reason=automatic``) for an authorization nobody captured."""
    return await _admin(request, lambda s: s.expire_authorization(intent_id))
