"""The sandbox's hosted pages: what Stripe's hosted pages and dashboard do, locally.

- ``/sandbox/checkout/{cs}``: Checkout. Pay, pay with a card that needs 3-D Secure
  (then an authentication step), decline, or expire the session.
- ``/sandbox/payment_intents/{pi}``: completes a PaymentIntent top-up (what the mobile
  SDK would do with the client secret).
- ``/sandbox/onboarding/{acct}?link=...``: Connect Express onboarding (single-use link):
  the account becomes enabled or restricted, or stays pending.
- ``/sandbox/dashboard/{acct}``: the payee's Express dashboard (balance, payouts).
- ``/sandbox/`` (also ``/sandbox/admin``): Stripe's side of things. Open a dispute on a
  charge and win or lose it, pay or fail a payout, reverse a transfer, fail a refund,
  expire a session, and see (and resend) every event delivered to the service.

Every action runs in one transaction and emits its events into the outbox; they are
delivered to the service's webhook routes once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from payments_sandbox import saved_cards
from payments_sandbox.cards import TEST_CARDS
from payments_sandbox.html import message, money, page
from payments_sandbox.models import SandboxObject
from payments_sandbox.page_kit import (
    account_status,
    act,
    chosen,
    form_of,
    not_found,
    read,
    refused,
    see_other,
)
from payments_sandbox.repository import ObjectRepository
from payments_sandbox.service import Card, PageError, SandboxStripe
from payments_sandbox.wiring import sessionmaker_of, settings_of

router = APIRouter(prefix="/sandbox")

# The hosted page of each object a customer acts on: what "not found" calls it, where it is.
_HOSTED: dict[str, tuple[str, str]] = {
    "checkout.session": ("Checkout Session", "/sandbox/checkout"),
    "payment_intent": ("PaymentIntent", "/sandbox/payment_intents"),
    "setup_intent": ("SetupIntent", "/sandbox/setup_intents"),
}
_PAY_PROMPT = "Your bank asks you to confirm this payment (3-D Secure, simulated)."
_SAVE_PROMPT = "Your bank asks you to confirm saving this card (3-D Secure, simulated)."
_AUTHENTICATION = "3-D Secure authentication"


def _hosted_url(type_: str, object_id: str) -> str:
    return f"{_HOSTED[type_][1]}/{object_id}"


CHECKOUT_BUTTONS: dict[str, Card] = {
    "pay": "success",
    "3ds": "3ds_required",
    "decline": "decline",
    "insufficient_funds": "insufficient_funds",
}
AUTH_BUTTONS: dict[str, Card] = {"pass": "3ds_pass", "fail": "3ds_fail"}


# ------------------------------------------------------------------ checkout


@router.get("/checkout/{session_id}")
async def checkout_page(request: Request, session_id: str, declined: str | None = None) -> Response:
    def context(row: SandboxObject) -> dict[str, Any]:
        return {
            "session": row.body,
            "line_items": row.private.get("line_items") or [],
            "declined": declined,
            "success_url": _success_url(row.body),
        }

    return await _object_page(
        request, session_id, "checkout.session", "checkout.html", "Checkout", context
    )


def _success_url(session: dict[str, Any]) -> str:
    return str(session.get("success_url") or "").replace("{CHECKOUT_SESSION_ID}", session["id"])


@router.post("/checkout/{session_id}")
async def checkout_action(request: Request, session_id: str) -> Response:
    back = _hosted_url("checkout.session", session_id)
    try:
        card_kind = await chosen(request, {**CHECKOUT_BUTTONS, "expire": None})
        if card_kind is None:
            await act(request, lambda s: s.expire_checkout_session(session_id))
            return see_other(back)
        session = await act(request, lambda s: s.attempt_checkout(session_id, card_kind))
    except PageError as exc:
        return refused("Checkout", exc, back)
    return await _after_checkout_attempt(request, session)


async def _after_checkout_attempt(request: Request, session: dict[str, Any]) -> Response:
    back = _hosted_url("checkout.session", session["id"])
    if session["status"] == "complete":
        return see_other(_success_url(session) or back)
    intent = await read(request, str(session["payment_intent"]), "payment_intent")
    status = intent.body["status"] if intent else "unknown"
    if status == "requires_action":
        return see_other(f"{back}/authenticate")
    error = (intent.body.get("last_payment_error") or {}) if intent else {}
    reason = error.get("decline_code") or error.get("code") or "declined"
    return see_other(f"{back}?declined={reason}")


async def _object_page(
    request: Request,
    object_id: str,
    type_: str,
    template: str,
    title: str,
    context: Callable[[SandboxObject], dict[str, Any]],
    *,
    action_suffix: str = "",
) -> Response:
    """The hosted page ``template`` of an object (404 when there is none); its form
    posts back to the page's own URL."""
    row = await read(request, object_id, type_)
    if row is None:
        return not_found(_HOSTED[type_][0])
    action = _hosted_url(type_, object_id) + action_suffix
    return page(template, title, action=action, **context(row))


async def _authenticate_page(
    request: Request, object_id: str, type_: str, amount_field: str | None, prompt: str
) -> Response:
    """The bank's 3-D Secure challenge for the object's payment (or saved card)."""

    def context(row: SandboxObject) -> dict[str, Any]:
        amount = money(row.body[amount_field], row.body["currency"]) if amount_field else ""
        return {"prompt": prompt, "amount": amount}

    return await _object_page(
        request,
        object_id,
        type_,
        "authenticate.html",
        _AUTHENTICATION,
        context,
        action_suffix="/authenticate",
    )


@router.get("/checkout/{session_id}/authenticate")
async def checkout_authenticate_page(request: Request, session_id: str) -> Response:
    return await _authenticate_page(
        request, session_id, "checkout.session", "amount_total", _PAY_PROMPT
    )


@router.post("/checkout/{session_id}/authenticate")
async def checkout_authenticate(request: Request, session_id: str) -> Response:
    try:
        card_kind = await chosen(request, AUTH_BUTTONS)
        session = await act(request, lambda s: s.attempt_checkout(session_id, card_kind))
    except PageError as exc:
        return refused(_AUTHENTICATION, exc, _hosted_url("checkout.session", session_id))
    return await _after_checkout_attempt(request, session)


# ------------------------------------------------------------------ payment intents


@router.get("/payment_intents/{intent_id}")
async def payment_intent_page(
    request: Request, intent_id: str, declined: str | None = None
) -> Response:
    return await _object_page(
        request,
        intent_id,
        "payment_intent",
        "payment_intent.html",
        "Confirm payment",
        lambda row: {"intent": row.body, "declined": declined},
    )


async def _intent_attempt(
    request: Request, intent_id: str, buttons: Mapping[str, Card], title: str
) -> Response:
    """Pay the PaymentIntent with the card of the button pressed (a button it does not
    have is refused under ``title``)."""
    back = _hosted_url("payment_intent", intent_id)
    try:
        card_kind = await chosen(request, buttons)
    except PageError as exc:
        return refused(title, exc, back)
    try:
        intent = await act(request, lambda s: s.attempt_payment_intent(intent_id, card_kind))
    except PageError as exc:
        return refused("Confirm payment", exc, back)
    if intent["status"] == "requires_action":
        return see_other(f"{back}/authenticate")
    if intent["status"] == "requires_payment_method":
        error = intent.get("last_payment_error") or {}
        return see_other(f"{back}?declined={error.get('decline_code') or error.get('code')}")
    return see_other(back)


@router.post("/payment_intents/{intent_id}")
async def payment_intent_action(request: Request, intent_id: str) -> Response:
    return await _intent_attempt(request, intent_id, CHECKOUT_BUTTONS, "Confirm payment")


@router.get("/payment_intents/{intent_id}/authenticate")
async def payment_intent_authenticate_page(request: Request, intent_id: str) -> Response:
    return await _authenticate_page(request, intent_id, "payment_intent", "amount", _PAY_PROMPT)


@router.post("/payment_intents/{intent_id}/authenticate")
async def payment_intent_authenticate(request: Request, intent_id: str) -> Response:
    return await _intent_attempt(request, intent_id, AUTH_BUTTONS, _AUTHENTICATION)


# ------------------------------------------------------------------ setup intents (saving a card)


def _card_label(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


# The test cards as the page offers them; those that cannot save a card look secondary.
_TEST_CARD_BUTTONS = [
    {
        "number": number,
        "label": f"{_card_label(number)} · {test.label}",
        "css": "" if test.setup in ("succeed", "authenticate") else "secondary",
    }
    for number, test in TEST_CARDS.items()
]


@router.get("/setup_intents/{intent_id}")
async def setup_intent_page(
    request: Request, intent_id: str, failed: str | None = None
) -> Response:
    def context(row: SandboxObject) -> dict[str, Any]:
        return {
            "intent": row.body,
            "failed": failed,
            "confirmable": row.body["status"] in saved_cards.SETUP_CONFIRMABLE,
            "test_cards": _TEST_CARD_BUTTONS,
        }

    return await _object_page(
        request, intent_id, "setup_intent", "setup_intent.html", "Save a card", context
    )


async def _setup_attempt(
    request: Request, intent_id: str, action: Callable[[SandboxStripe], Awaitable[dict[str, Any]]]
) -> Response:
    back = _hosted_url("setup_intent", intent_id)
    try:
        intent = await act(request, action)
    except (PageError, saved_cards.SetupPageError) as exc:
        return refused("Save a card", PageError(str(exc)), back)
    if intent["status"] == "requires_action":
        return see_other(f"{back}/authenticate")
    error = intent.get("last_setup_error") or {}
    if intent["status"] == "requires_payment_method" and error:
        return see_other(f"{back}?failed={error.get('decline_code') or error.get('code')}")
    return see_other(back)


@router.post("/setup_intents/{intent_id}")
async def setup_intent_action(request: Request, intent_id: str) -> Response:
    try:
        number = await chosen(
            request,
            {number: number for number in TEST_CARDS},
            unknown="Pick one of the test cards.",
        )
    except PageError as exc:
        return refused("Save a card", exc, _hosted_url("setup_intent", intent_id))
    return await _setup_attempt(
        request, intent_id, lambda s: saved_cards.page_attempt(s, intent_id, number)
    )


@router.get("/setup_intents/{intent_id}/authenticate")
async def setup_intent_authenticate_page(request: Request, intent_id: str) -> Response:
    return await _authenticate_page(request, intent_id, "setup_intent", None, _SAVE_PROMPT)


_SETUP_AUTH_BUTTONS: dict[str, Literal["pass", "fail"]] = {"pass": "pass", "fail": "fail"}


@router.post("/setup_intents/{intent_id}/authenticate")
async def setup_intent_authenticate(request: Request, intent_id: str) -> Response:
    try:
        result = await chosen(request, _SETUP_AUTH_BUTTONS)
    except PageError as exc:
        return refused(_AUTHENTICATION, exc, _hosted_url("setup_intent", intent_id))
    return await _setup_attempt(
        request, intent_id, lambda s: saved_cards.page_authenticate(s, intent_id, result)
    )


# ------------------------------------------------------------------ connect onboarding


@router.get("/onboarding/{account_id}")
async def onboarding_page(request: Request, account_id: str, link: str | None = None) -> Response:
    async with sessionmaker_of(request)() as session:
        row = await ObjectRepository(session).get(account_id)
        if row is None or row.type != "account":
            return not_found("account")
        service = SandboxStripe(session, settings_of(request))
        usable = service.onboarding_link(row, link)
        urls = service.link_urls(row, link)
    if usable is None:
        if urls is not None:
            # Stripe sends an expired or already used link to its refresh_url.
            return RedirectResponse(str(urls["refresh_url"]), status_code=302)
        return message("Onboarding", "This onboarding link is not valid.", status_code=404)
    account = row.body
    return page(
        "onboarding.html",
        "Set up payouts",
        account=account,
        status=account_status(account),
        due=", ".join((account.get("requirements") or {}).get("currently_due") or []) or "nothing",
        link=link,
        action=f"/sandbox/onboarding/{account_id}",
    )


_ONBOARDING_OUTCOMES: dict[str, Literal["enabled", "restricted", "later"]] = {
    "enabled": "enabled",
    "restricted": "restricted",
    "later": "later",
}


@router.post("/onboarding/{account_id}")
async def onboarding_submit(request: Request, account_id: str) -> Response:
    form = await form_of(request)
    try:
        choice = await chosen(
            request, _ONBOARDING_OUTCOMES, field="outcome", unknown="Unknown choice."
        )
    except PageError as exc:
        return refused("Onboarding", exc, "/sandbox/")
    try:
        return_url = await act(
            request, lambda s: s.finish_onboarding(account_id, form.get("link"), choice)
        )
    except PageError as exc:
        return refused("Onboarding", exc, "/sandbox/")
    return see_other(return_url)


@router.get("/dashboard/{account_id}")
async def dashboard_page(request: Request, account_id: str) -> Response:
    async with sessionmaker_of(request)() as session:
        objects = ObjectRepository(session)
        row = await objects.get(account_id)
        if row is None or row.type != "account":
            return not_found("account")
        balance = await SandboxStripe(session, settings_of(request), account=account_id).balance()
        payouts, _ = await objects.page("payout", account=account_id, limit=50)
        incoming, _ = await objects.page(
            "balance_transaction", account=account_id, filters={"type": "payment"}, limit=50
        )
    account = row.body
    return page(
        "dashboard.html",
        "Express dashboard",
        account=account,
        status=account_status(account),
        balances=[money(b["amount"], b["currency"]) for b in balance["available"]],
        payouts=[p.body for p in payouts],
        incoming=[t.body for t in incoming],
    )
