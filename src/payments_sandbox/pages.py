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

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from payments_sandbox import events as sandbox_events
from payments_sandbox import saved_cards
from payments_sandbox.cards import TEST_CARDS
from payments_sandbox.errors import StripeApiError
from payments_sandbox.html import button, card, esc, money, notice, page, table
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params
from payments_sandbox.repository import EventRepository, ObjectRepository
from payments_sandbox.service import Card, PageError, SandboxStripe
from payments_sandbox.wiring import kick, sessionmaker_of, settings_of

router = APIRouter(prefix="/sandbox")

T = TypeVar("T")

CHECKOUT_BUTTONS: dict[str, Card] = {
    "pay": "success",
    "3ds": "3ds_required",
    "decline": "decline",
    "insufficient_funds": "insufficient_funds",
}
AUTH_BUTTONS: dict[str, Card] = {"pass": "3ds_pass", "fail": "3ds_fail"}


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


async def _act(request: Request, action: Callable[[SandboxStripe], Awaitable[T]]) -> T:
    """Run a page action in its own transaction; its events go out after the commit.
    A refusal raises ``PageError`` (the caller shows it) and changes nothing."""
    try:
        async with sessionmaker_of(request).begin() as session:
            result = await action(SandboxStripe(session, settings_of(request)))
    except StripeApiError as exc:
        raise PageError(exc.message) from exc
    kick(request)
    return result


async def _read(request: Request, object_id: str, type_: str) -> SandboxObject | None:
    async with sessionmaker_of(request)() as session:
        row = await ObjectRepository(session).get(object_id)
    return row if row is not None and row.type == type_ else None


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _not_found(what: str) -> Response:
    return page("Not found", notice(f"No such {what} in the sandbox."), status_code=404)


def _refused(title: str, error: PageError, back: str) -> Response:
    return page(
        title,
        notice(str(error)) + f'<p><a href="{esc(back)}">Back</a></p>',
        status_code=409,
    )


# ------------------------------------------------------------------ checkout


def _line_items(row: SandboxObject) -> str:
    session = row.body
    items = row.private.get("line_items") or []
    return table(
        ["Item", "Quantity", "Unit price", "Amount"],
        [
            [
                esc(item["name"]),
                esc(item["quantity"]),
                money(item["unit_amount"], session["currency"]),
                money(item["unit_amount"] * item["quantity"], session["currency"]),
            ]
            for item in items
        ],
    )


def _pay_buttons(action: str) -> str:
    return (
        button(action, "Pay", fields={"action": "pay"})
        + button(action, "Pay with a card that needs 3-D Secure", fields={"action": "3ds"})
        + button(action, "Decline", fields={"action": "decline"}, css="danger")
        + button(
            action,
            "Decline: insufficient funds",
            fields={"action": "insufficient_funds"},
            css="secondary",
        )
    )


@router.get("/checkout/{session_id}")
async def checkout_page(request: Request, session_id: str, declined: str | None = None) -> Response:
    row = await _read(request, session_id, "checkout.session")
    if row is None:
        return _not_found("Checkout Session")
    session = row.body
    action = f"/sandbox/checkout/{session_id}"
    parts = [
        f'<p class="muted">Checkout Session <code>{esc(session_id)}</code></p>',
        f'<div class="amount">{money(session["amount_total"], session["currency"])}</div>',
        _line_items(row),
    ]
    if declined:
        parts.append(
            notice(f"The payment was declined ({declined}). Try again or use another card.")
        )
    if session["status"] == "open":
        parts.append("<p>Card: Visa •••• 4242 (sandbox test card)</p>")
        parts.append(_pay_buttons(action))
        parts.append("<hr>")
        parts.append(
            button(action, "Expire this session", fields={"action": "expire"}, css="secondary")
        )
        if session.get("cancel_url"):
            parts.append(f' <a href="{esc(session["cancel_url"])}">Cancel and go back</a>')
    elif session["status"] == "complete":
        parts.append(
            notice("Paid. The service hears it from the webhook, not from this page.", kind="ok")
        )
        if session.get("success_url"):
            parts.append(f'<p><a href="{esc(_success_url(session))}">Continue</a></p>')
    else:
        parts.append(notice(f"This Checkout Session is {session['status']}."))
    return page("Checkout", card("Pay", "".join(parts)))


def _success_url(session: dict[str, Any]) -> str:
    return str(session.get("success_url") or "").replace("{CHECKOUT_SESSION_ID}", session["id"])


@router.post("/checkout/{session_id}")
async def checkout_action(request: Request, session_id: str) -> Response:
    choice = (await _form(request)).get("action", "")
    back = f"/sandbox/checkout/{session_id}"
    try:
        if choice == "expire":
            await _act(request, lambda s: s.expire_checkout_session(session_id))
            return _see_other(back)
        if choice not in CHECKOUT_BUTTONS:
            raise PageError(f"Unknown action {choice!r}.")
        card_kind = CHECKOUT_BUTTONS[choice]
        session = await _act(request, lambda s: s.attempt_checkout(session_id, card_kind))
    except PageError as exc:
        return _refused("Checkout", exc, back)
    return await _after_checkout_attempt(request, session)


async def _after_checkout_attempt(request: Request, session: dict[str, Any]) -> Response:
    back = f"/sandbox/checkout/{session['id']}"
    if session["status"] == "complete":
        return _see_other(_success_url(session) or back)
    intent = await _read(request, str(session["payment_intent"]), "payment_intent")
    status = intent.body["status"] if intent else "unknown"
    if status == "requires_action":
        return _see_other(f"{back}/authenticate")
    error = (intent.body.get("last_payment_error") or {}) if intent else {}
    reason = error.get("decline_code") or error.get("code") or "declined"
    return _see_other(f"{back}?declined={reason}")


def _authenticate_page(action: str, amount: str) -> Response:
    body = (
        "<p>Your bank asks you to confirm this payment (3-D Secure, simulated).</p>"
        f'<div class="amount">{amount}</div>'
        + button(action, "Complete authentication", fields={"action": "pass"})
        + button(action, "Fail authentication", fields={"action": "fail"}, css="danger")
    )
    return page("3-D Secure authentication", card("Sandbox Bank", body))


@router.get("/checkout/{session_id}/authenticate")
async def checkout_authenticate_page(request: Request, session_id: str) -> Response:
    row = await _read(request, session_id, "checkout.session")
    if row is None:
        return _not_found("Checkout Session")
    return _authenticate_page(
        f"/sandbox/checkout/{session_id}/authenticate",
        money(row.body["amount_total"], row.body["currency"]),
    )


@router.post("/checkout/{session_id}/authenticate")
async def checkout_authenticate(request: Request, session_id: str) -> Response:
    choice = (await _form(request)).get("action", "")
    try:
        if choice not in AUTH_BUTTONS:
            raise PageError(f"Unknown action {choice!r}.")
        card_kind = AUTH_BUTTONS[choice]
        session = await _act(request, lambda s: s.attempt_checkout(session_id, card_kind))
    except PageError as exc:
        return _refused("3-D Secure authentication", exc, f"/sandbox/checkout/{session_id}")
    return await _after_checkout_attempt(request, session)


# ------------------------------------------------------------------ payment intents


@router.get("/payment_intents/{intent_id}")
async def payment_intent_page(
    request: Request, intent_id: str, declined: str | None = None
) -> Response:
    row = await _read(request, intent_id, "payment_intent")
    if row is None:
        return _not_found("PaymentIntent")
    intent = row.body
    action = f"/sandbox/payment_intents/{intent_id}"
    parts = [
        f'<p class="muted">PaymentIntent <code>{esc(intent_id)}</code> · status '
        f"<strong>{esc(intent['status'])}</strong></p>",
        f'<div class="amount">{money(intent["amount"], intent["currency"])}</div>',
        "<p>What the mobile app would do with the client secret and Stripe's SDK, "
        "done here by hand.</p>",
    ]
    if declined:
        parts.append(notice(f"The payment was declined ({declined})."))
    if intent["status"] in ("requires_payment_method", "requires_confirmation"):
        parts.append(_pay_buttons(action))
    elif intent["status"] == "requires_action":
        parts.append(f'<p><a href="{esc(action)}/authenticate">Authenticate the payment</a></p>')
    elif intent["status"] == "succeeded":
        parts.append(notice("Paid.", kind="ok"))
    else:
        parts.append(notice(f"This payment is {intent['status']}."))
    return page("Confirm payment", card("Payment", "".join(parts)))


async def _intent_attempt(request: Request, intent_id: str, card_kind: Card) -> Response:
    back = f"/sandbox/payment_intents/{intent_id}"
    try:
        intent = await _act(request, lambda s: s.attempt_payment_intent(intent_id, card_kind))
    except PageError as exc:
        return _refused("Confirm payment", exc, back)
    if intent["status"] == "requires_action":
        return _see_other(f"{back}/authenticate")
    if intent["status"] == "requires_payment_method":
        error = intent.get("last_payment_error") or {}
        return _see_other(f"{back}?declined={error.get('decline_code') or error.get('code')}")
    return _see_other(back)


@router.post("/payment_intents/{intent_id}")
async def payment_intent_action(request: Request, intent_id: str) -> Response:
    choice = (await _form(request)).get("action", "")
    if choice not in CHECKOUT_BUTTONS:
        return _refused(
            "Confirm payment",
            PageError(f"Unknown action {choice!r}."),
            f"/sandbox/payment_intents/{intent_id}",
        )
    return await _intent_attempt(request, intent_id, CHECKOUT_BUTTONS[choice])


@router.get("/payment_intents/{intent_id}/authenticate")
async def payment_intent_authenticate_page(request: Request, intent_id: str) -> Response:
    row = await _read(request, intent_id, "payment_intent")
    if row is None:
        return _not_found("PaymentIntent")
    return _authenticate_page(
        f"/sandbox/payment_intents/{intent_id}/authenticate",
        money(row.body["amount"], row.body["currency"]),
    )


@router.post("/payment_intents/{intent_id}/authenticate")
async def payment_intent_authenticate(request: Request, intent_id: str) -> Response:
    choice = (await _form(request)).get("action", "")
    if choice not in AUTH_BUTTONS:
        return _refused(
            "3-D Secure authentication",
            PageError(f"Unknown action {choice!r}."),
            f"/sandbox/payment_intents/{intent_id}",
        )
    return await _intent_attempt(request, intent_id, AUTH_BUTTONS[choice])


# ------------------------------------------------------------------ setup intents (saving a card)


def _card_label(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


@router.get("/setup_intents/{intent_id}")
async def setup_intent_page(
    request: Request, intent_id: str, failed: str | None = None
) -> Response:
    row = await _read(request, intent_id, "setup_intent")
    if row is None:
        return _not_found("SetupIntent")
    intent = row.body
    action = f"/sandbox/setup_intents/{intent_id}"
    parts = [
        f'<p class="muted">SetupIntent <code>{esc(intent_id)}</code> · status '
        f"<strong>{esc(intent['status'])}</strong> · usage {esc(intent['usage'])}</p>",
        "<p>What the app would do with the client secret and Stripe's SDK: pick one of "
        "Stripe's test cards to save.</p>",
    ]
    if failed:
        parts.append(notice(f"The card was not saved ({failed})."))
    if intent["status"] in saved_cards.SETUP_CONFIRMABLE:
        parts.extend(
            button(
                action,
                f"{_card_label(number)} · {test.label}",
                fields={"action": number},
                css="" if test.setup in ("succeed", "authenticate") else "secondary",
            )
            for number, test in TEST_CARDS.items()
        )
    elif intent["status"] == "requires_action":
        parts.append(f'<p><a href="{esc(action)}/authenticate">Authenticate the card</a></p>')
    elif intent["status"] == "succeeded":
        parts.append(notice("Card saved.", kind="ok"))
    else:
        parts.append(notice(f"This SetupIntent is {intent['status']}."))
    return page("Save a card", card("Card", "".join(parts)))


async def _setup_attempt(
    request: Request, intent_id: str, action: Callable[[SandboxStripe], Awaitable[dict[str, Any]]]
) -> Response:
    back = f"/sandbox/setup_intents/{intent_id}"
    try:
        intent = await _act(request, action)
    except (PageError, saved_cards.SetupPageError) as exc:
        return _refused("Save a card", PageError(str(exc)), back)
    if intent["status"] == "requires_action":
        return _see_other(f"{back}/authenticate")
    error = intent.get("last_setup_error") or {}
    if intent["status"] == "requires_payment_method" and error:
        return _see_other(f"{back}?failed={error.get('decline_code') or error.get('code')}")
    return _see_other(back)


@router.post("/setup_intents/{intent_id}")
async def setup_intent_action(request: Request, intent_id: str) -> Response:
    number = (await _form(request)).get("action", "")
    if number not in TEST_CARDS:
        return _refused(
            "Save a card",
            PageError("Pick one of the test cards."),
            f"/sandbox/setup_intents/{intent_id}",
        )
    return await _setup_attempt(
        request, intent_id, lambda s: saved_cards.page_attempt(s, intent_id, number)
    )


@router.get("/setup_intents/{intent_id}/authenticate")
async def setup_intent_authenticate_page(request: Request, intent_id: str) -> Response:
    row = await _read(request, intent_id, "setup_intent")
    if row is None:
        return _not_found("SetupIntent")
    action = f"/sandbox/setup_intents/{intent_id}/authenticate"
    body = (
        "<p>Your bank asks you to confirm saving this card (3-D Secure, simulated).</p>"
        + button(action, "Complete authentication", fields={"action": "pass"})
        + button(action, "Fail authentication", fields={"action": "fail"}, css="danger")
    )
    return page("3-D Secure authentication", card("Sandbox Bank", body))


@router.post("/setup_intents/{intent_id}/authenticate")
async def setup_intent_authenticate(request: Request, intent_id: str) -> Response:
    choice = (await _form(request)).get("action", "")
    if choice not in ("pass", "fail"):
        return _refused(
            "3-D Secure authentication",
            PageError(f"Unknown action {choice!r}."),
            f"/sandbox/setup_intents/{intent_id}",
        )
    result: Literal["pass", "fail"] = "pass" if choice == "pass" else "fail"
    return await _setup_attempt(
        request, intent_id, lambda s: saved_cards.page_authenticate(s, intent_id, result)
    )


# ------------------------------------------------------------------ connect onboarding


def account_status(account: dict[str, Any]) -> str:
    """A label for humans (the service derives its own status from the same fields)."""
    if account.get("charges_enabled") and account.get("payouts_enabled"):
        return "enabled"
    requirements = account.get("requirements") or {}
    if account.get("details_submitted") and requirements.get("disabled_reason"):
        return "restricted"
    return "pending"


@router.get("/onboarding/{account_id}")
async def onboarding_page(request: Request, account_id: str, link: str | None = None) -> Response:
    async with sessionmaker_of(request)() as session:
        row = await ObjectRepository(session).get(account_id)
        if row is None or row.type != "account":
            return _not_found("account")
        service = SandboxStripe(session, settings_of(request))
        usable = service.onboarding_link(row, link)
        urls = service.link_urls(row, link)
    if usable is None:
        if urls is not None:
            # Stripe sends an expired or already used link to its refresh_url.
            return RedirectResponse(str(urls["refresh_url"]), status_code=302)
        return page("Onboarding", notice("This onboarding link is not valid."), status_code=404)
    account = row.body
    action = f"/sandbox/onboarding/{account_id}"
    due = ", ".join((account.get("requirements") or {}).get("currently_due") or []) or "nothing"
    body = (
        f'<p class="muted">Express account <code>{esc(account_id)}</code> · now '
        f"<strong>{esc(account_status(account))}</strong></p>"
        f"<p>Stripe would ask for identity, bank account and terms here. Still due: "
        f"{esc(due)}.</p>"
        + button(
            action,
            "Submit details: verification succeeds (enabled)",
            fields={"link": link, "outcome": "enabled"},
        )
        + button(
            action,
            "Submit details: verification fails (restricted)",
            fields={"link": link, "outcome": "restricted"},
            css="danger",
        )
        + button(
            action,
            "Save and finish later (stays pending)",
            fields={"link": link, "outcome": "later"},
            css="secondary",
        )
        + '<p class="muted">Each choice uses up this link (Stripe links are single-use) and '
        "returns you to the app; the service learns the result from account.updated.</p>"
    )
    return page("Set up payouts", card("Stripe Express onboarding", body))


@router.post("/onboarding/{account_id}")
async def onboarding_submit(request: Request, account_id: str) -> Response:
    form = await _form(request)
    outcome = form.get("outcome", "")
    if outcome not in ("enabled", "restricted", "later"):
        return _refused("Onboarding", PageError("Unknown choice."), "/sandbox/")
    choice: Literal["enabled", "restricted", "later"] = outcome  # type: ignore[assignment]
    try:
        return_url = await _act(
            request, lambda s: s.finish_onboarding(account_id, form.get("link"), choice)
        )
    except PageError as exc:
        return _refused("Onboarding", exc, "/sandbox/")
    return _see_other(return_url)


@router.get("/dashboard/{account_id}")
async def dashboard_page(request: Request, account_id: str) -> Response:
    async with sessionmaker_of(request)() as session:
        objects = ObjectRepository(session)
        row = await objects.get(account_id)
        if row is None or row.type != "account":
            return _not_found("account")
        balance = await SandboxStripe(session, settings_of(request), account=account_id).balance()
        payouts, _ = await objects.page("payout", account=account_id, limit=50)
        incoming, _ = await objects.page(
            "balance_transaction", account=account_id, filters={"type": "payment"}, limit=50
        )
    account = row.body
    balances = ", ".join(money(b["amount"], b["currency"]) for b in balance["available"])
    body = (
        f'<p class="muted">Account <code>{esc(account_id)}</code> · '
        f"<strong>{esc(account_status(account))}</strong> · payouts to bank •••• "
        "6789</p>"
        f"<p>Available balance: <strong>{balances}</strong></p>"
    )
    body += card(
        "Payouts",
        table(
            ["Payout", "Amount", "Status", "Arrival"],
            [
                [
                    f"<code>{esc(p.body['id'])}</code>",
                    money(p.body["amount"], p.body["currency"]),
                    esc(p.body["status"]),
                    esc(p.body.get("arrival_date")),
                ]
                for p in payouts
            ],
        ),
    )
    body += card(
        "Money received from the platform",
        table(
            ["Transaction", "Amount", "Source"],
            [
                [
                    f"<code>{esc(t.body['id'])}</code>",
                    money(t.body["amount"], t.body["currency"]),
                    esc(t.body.get("source")),
                ]
                for t in incoming
            ],
        ),
    )
    return page("Express dashboard", body)


# ------------------------------------------------------------------ admin


def _admin_row_actions(row: SandboxObject) -> str:
    body, oid = row.body, row.id
    if row.type == "checkout.session" and body["status"] == "open":
        return f'<a href="/sandbox/checkout/{esc(oid)}">open page</a> ' + button(
            f"/sandbox/admin/checkout/{oid}/expire", "Expire", css="small secondary"
        )
    if row.type == "payment_intent" and body["status"] == "requires_capture":
        # An authorization: let it run out as Stripe's 7-day capture window would.
        return button(
            f"/sandbox/admin/payment_intents/{oid}/expire_authorization",
            "Expire authorization",
            css="small danger",
        )
    if row.type == "payment_intent" and body["status"] not in ("succeeded", "canceled"):
        return f'<a href="/sandbox/payment_intents/{esc(oid)}">open page</a>'
    if row.type == "charge" and body["status"] == "succeeded" and not body.get("disputed"):
        reasons = "".join(
            f'<option value="{r}">{r}</option>'
            for r in ("fraudulent", "product_not_received", "duplicate", "general")
        )
        extra = (
            '<input name="amount" placeholder="amount (minor)" inputmode="numeric"> '
            f'<select name="reason">{reasons}</select> '
        )
        return button(
            f"/sandbox/admin/charges/{oid}/dispute", "Open dispute", css="small danger", extra=extra
        )
    if row.type == "dispute" and body["status"] in (
        "warning_needs_response",
        "needs_response",
        "under_review",
    ):
        target = f"/sandbox/admin/disputes/{oid}/close"
        return button(target, "Win", fields={"outcome": "won"}, css="small") + button(
            target, "Lose", fields={"outcome": "lost"}, css="small danger"
        )
    if row.type == "refund" and body["status"] == "succeeded":
        return button(f"/sandbox/admin/refunds/{oid}/fail", "Fail refund", css="small danger")
    if row.type == "transfer" and not body.get("reversed"):
        extra = '<input name="amount" placeholder="all" inputmode="numeric"> '
        return button(
            f"/sandbox/admin/transfers/{oid}/reverse", "Reverse", css="small danger", extra=extra
        )
    if row.type == "payout" and body["status"] in ("pending", "in_transit"):
        target = f"/sandbox/admin/payouts/{oid}"
        return button(target, "Mark paid", fields={"outcome": "paid"}, css="small") + button(
            target, "Fail", fields={"outcome": "failed"}, css="small danger"
        )
    if row.type == "account":
        links = f'<a href="/sandbox/dashboard/{esc(oid)}">dashboard</a> '
        return links + button(f"/sandbox/admin/accounts/{oid}/onboard", "Onboarding", css="small")
    return ""


def _amount(body: dict[str, Any], field: str = "amount") -> str:
    return money(body.get(field), body.get("currency"))


ADMIN_SECTIONS: list[tuple[str, str, list[str], Callable[[dict[str, Any]], list[str]]]] = [
    (
        "checkout.session",
        "Checkout Sessions",
        ["Session", "Amount", "Status", "Payment"],
        lambda b: [_amount(b, "amount_total"), esc(b["status"]), esc(b["payment_status"])],
    ),
    (
        "payment_intent",
        "PaymentIntents",
        ["PaymentIntent", "Amount", "Status", "Metadata"],
        lambda b: [_amount(b), esc(b["status"]), esc(b.get("metadata"))],
    ),
    (
        "charge",
        "Charges",
        ["Charge", "Amount", "Status", "Refunded / disputed"],
        lambda b: [
            _amount(b),
            esc(b["status"]),
            f"{money(b.get('amount_refunded'), b.get('currency'))} / {esc(b.get('disputed'))}",
        ],
    ),
    (
        "dispute",
        "Disputes",
        ["Dispute", "Amount", "Status", "Charge"],
        lambda b: [_amount(b), esc(b["status"]), f"<code>{esc(b['charge'])}</code>"],
    ),
    (
        "refund",
        "Refunds",
        ["Refund", "Amount", "Status", "Charge"],
        lambda b: [_amount(b), esc(b["status"]), f"<code>{esc(b['charge'])}</code>"],
    ),
    (
        "account",
        "Connected accounts (Express)",
        ["Account", "Status", "Charges / payouts", "Metadata"],
        lambda b: [
            esc(account_status(b)),
            f"{esc(b.get('charges_enabled'))} / {esc(b.get('payouts_enabled'))}",
            esc(b.get("metadata")),
        ],
    ),
    (
        "transfer",
        "Transfers",
        ["Transfer", "Amount", "Destination", "Reversed"],
        lambda b: [
            _amount(b),
            f"<code>{esc(b['destination'])}</code>",
            money(b.get("amount_reversed"), b.get("currency")),
        ],
    ),
    (
        "payout",
        "Payouts (connected accounts)",
        ["Payout", "Amount", "Status", "Arrival"],
        lambda b: [_amount(b), esc(b["status"]), esc(b.get("arrival_date"))],
    ),
]


@router.get("/")
@router.get("/admin")
async def admin_page(request: Request, error: str | None = None) -> Response:
    settings = settings_of(request)
    async with sessionmaker_of(request)() as session:
        objects = ObjectRepository(session)
        sections = [
            (title, headers, fields, await objects.recent([type_], 25))
            for type_, title, headers, fields in ADMIN_SECTIONS
        ]
        events = await EventRepository(session).recent(40)
        platform = await SandboxStripe(session, settings).balance()
    base = settings.public_base_url.rstrip("/")
    parts = [notice(error)] if error else []
    parts.append(
        card(
            "This is a sandbox",
            "<p>The service runs without a Stripe key, so its Stripe calls go to the "
            f"Stripe-compatible API at <code>{esc(base)}/sandbox/stripe/v1</code> and every "
            "step below emits a Stripe-shaped event, signed with the sandbox webhook "
            f"secret and POSTed to <code>{esc(base)}/api/v1/webhooks/stripe</code> (or "
            "<code>/connect</code> for connected accounts), exactly as Stripe would.</p>"
            "<p>Platform balance: <strong>"
            + ", ".join(money(b["amount"], b["currency"]) for b in platform["available"])
            + "</strong></p>",
        )
    )
    for title, headers, fields, rows in sections:
        parts.append(
            card(
                title,
                table(
                    [*headers, ""],
                    [
                        [f"<code>{esc(row.id)}</code>", *fields(row.body), _admin_row_actions(row)]
                        for row in rows
                    ],
                ),
                anchor=title.split()[0].lower(),
            )
        )
    parts.append(
        card(
            "Events sent to the service",
            table(
                ["Event", "Type", "Account", "Delivery", "Attempts", "Last answer", ""],
                [
                    [
                        f"<code>{esc(e.id)}</code>",
                        esc(e.type),
                        esc(e.account or "platform"),
                        esc(e.status),
                        esc(e.attempts),
                        esc(e.last_status)
                        + (
                            f' <span class="muted">{esc(e.last_error[:120])}</span>'
                            if e.last_error
                            else ""
                        ),
                        button(
                            f"/sandbox/admin/events/{e.id}/resend", "Resend", css="small secondary"
                        ),
                    ]
                    for e in events
                ],
            ),
            anchor="events",
        )
    )
    return page("Stripe sandbox", "".join(parts))


async def _admin(request: Request, action: Callable[[SandboxStripe], Awaitable[Any]]) -> Response:
    try:
        await _act(request, action)
    except PageError as exc:
        return _refused("Stripe sandbox", exc, "/sandbox/")
    return _see_other("/sandbox/")


def _optional_int(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise PageError(f"{value!r} is not an amount in minor units.")
    return int(value)


@router.post("/admin/charges/{charge_id}/dispute")
async def admin_open_dispute(request: Request, charge_id: str) -> Response:
    form = await _form(request)
    try:
        amount = _optional_int(form.get("amount"))
    except PageError as exc:
        return _refused("Stripe sandbox", exc, "/sandbox/")
    reason = form.get("reason") or "fraudulent"
    return await _admin(request, lambda s: s.open_dispute(charge_id, amount, reason))


@router.post("/admin/disputes/{dispute_id}/close")
async def admin_close_dispute(request: Request, dispute_id: str) -> Response:
    outcome = (await _form(request)).get("outcome")
    if outcome not in ("won", "lost"):
        return _refused("Stripe sandbox", PageError("Choose won or lost."), "/sandbox/")
    result: Literal["won", "lost"] = "won" if outcome == "won" else "lost"
    return await _admin(request, lambda s: s.close_dispute(dispute_id, result))


@router.post("/admin/payouts/{payout_id}")
async def admin_settle_payout(request: Request, payout_id: str) -> Response:
    outcome = (await _form(request)).get("outcome")
    if outcome not in ("paid", "failed"):
        return _refused("Stripe sandbox", PageError("Choose paid or failed."), "/sandbox/")
    result: Literal["paid", "failed"] = "paid" if outcome == "paid" else "failed"
    return await _admin(request, lambda s: s.settle_payout(payout_id, result))


@router.post("/admin/transfers/{transfer_id}/reverse")
async def admin_reverse_transfer(request: Request, transfer_id: str) -> Response:
    form = await _form(request)
    amount = (form.get("amount") or "").strip()
    params = Params({"amount": amount} if amount else {})
    return await _admin(request, lambda s: s.reverse_transfer(transfer_id, params))


@router.post("/test-clocks/{clock_id}/advance")
async def advance_test_clock(request: Request, clock_id: str) -> Response:
    """Move a customer's test clock to ``frozen_time`` (Unix seconds): every renewal,
    trial end and cancel at period end due by then happens, with its events."""
    from payments_sandbox.billing import SandboxBilling

    try:
        frozen_time = _optional_int((await _form(request)).get("frozen_time"))
        if frozen_time is None:
            raise PageError("Give frozen_time, Unix seconds.")
    except PageError as exc:
        return _refused("Stripe sandbox", exc, "/sandbox/")
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
        link = await _act(request, lambda s: s.create_account_link(params))
    except PageError as exc:
        return _refused("Stripe sandbox", exc, "/sandbox/")
    return _see_other(str(link["url"]))


@router.post("/admin/events/{event_id}/resend")
async def admin_resend_event(request: Request, event_id: str) -> Response:
    if not await sandbox_events.resend(sessionmaker_of(request), event_id):
        return _not_found("event")
    kick(request)
    return _see_other("/sandbox/#events")


@router.post("/admin/payment_intents/{intent_id}/expire_authorization")
async def admin_expire_authorization(request: Request, intent_id: str) -> Response:
    """Stripe's capture window passing, on demand: ``payment_intent.canceled``
    (``cancellation_reason=automatic``) for an authorization nobody captured."""
    return await _admin(request, lambda s: s.expire_authorization(intent_id))
