"""The sandbox's SetupIntents and PaymentMethods (attach, detach), on ``SandboxStripe``.

A SetupIntent is confirmed with a test PaymentMethod id (``pm_card_visa``), a sandbox
PaymentMethod, or on the hosted page ``/sandbox/setup_intents/{id}`` by picking one of
Stripe's test card numbers. Cards that need 3-D Secure at setup wait in
``requires_action`` for the authentication page. Success attaches the card to the
SetupIntent's customer and emits ``payment_method.attached`` and
``setup_intent.succeeded``; a refusal emits ``setup_intent.setup_failed``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

from payments_sandbox import objects
from payments_sandbox.cards import (
    TEST_CARDS,
    TEST_PAYMENT_METHOD_CARDS,
    TestCard,
    card_of_fingerprint,
    fingerprint,
)
from payments_sandbox.errors import StripeApiError, invalid, refused
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params

if TYPE_CHECKING:
    from payments_sandbox.service import SandboxStripe

SETUP_CONFIRMABLE = ("requires_payment_method", "requires_confirmation")
EXP_MONTH, EXP_YEAR = 12, 2034


class SetupPageError(Exception):
    """A page action that cannot happen (shown on the page, nothing changes)."""


async def create_card(s: SandboxStripe, number: str) -> SandboxObject:
    """A PaymentMethod for one of Stripe's test card numbers (nothing else is accepted;
    the number itself is never kept)."""
    card = TEST_CARDS.get(number)
    if card is None:
        raise refused(
            "The sandbox accepts Stripe's test card numbers only.",
            code="incorrect_number",
            param="card[number]",
        )
    body = objects.payment_method(
        brand=card.brand,
        last4=number[-4:],
        fingerprint=fingerprint(number),
        exp_month=EXP_MONTH,
        exp_year=EXP_YEAR,
    )
    return await s.objects.add("payment_method", body)


async def create_payment_method(s: SandboxStripe, p: Params) -> dict[str, Any]:
    if (p.text("type") or "card") != "card":
        raise invalid("The sandbox has card PaymentMethods only.", param="type")
    number = (p.text("card.number") or "").replace(" ", "")
    if not number:
        raise invalid("Missing required param: card[number].", param="card[number]")
    return (await create_card(s, number)).body


async def _resolve(s: SandboxStripe, payment_method: str) -> SandboxObject:
    """A test PaymentMethod id becomes a new PaymentMethod, as at Stripe."""
    number = TEST_PAYMENT_METHOD_CARDS.get(payment_method)
    if number is not None:
        return await create_card(s, number)
    return await s.load(payment_method, "payment_method", param="payment_method")


async def attach(s: SandboxStripe, payment_method_id: str, customer_id: str) -> dict[str, Any]:
    row = await s.load(payment_method_id, "payment_method")
    await s.load(customer_id, "customer", param="customer")
    body = row.body
    if body.get("customer") not in (None, customer_id):
        raise refused(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    if body.get("customer") is None:
        body["customer"] = customer_id
        await s.objects.save(row, body)
        await s.emit("payment_method.attached", body)
    return row.body


async def attach_api(s: SandboxStripe, payment_method_id: str, p: Params) -> dict[str, Any]:
    customer = p.text("customer")
    if customer is None:
        raise invalid("Missing required param: customer.", param="customer")
    return await attach(s, payment_method_id, customer)


async def detach(s: SandboxStripe, payment_method_id: str) -> dict[str, Any]:
    row = await s.load(payment_method_id, "payment_method")
    body = row.body
    if body.get("customer") is None:
        raise refused(
            "The payment method you provided is not attached to a customer so detachment "
            "is impossible.",
            code="payment_method_unexpected_state",
        )
    previous = {"customer": body["customer"]}
    body["customer"] = None
    await s.objects.save(row, body)
    await s.emit("payment_method.detached", body, previous=previous)
    return row.body


async def create_setup_intent(s: SandboxStripe, p: Params) -> dict[str, Any] | StripeApiError:
    customer_id = p.text("customer")
    if customer_id is not None:
        await s.load(customer_id, "customer", param="customer")
    usage = p.text("usage") or "off_session"
    if usage not in ("off_session", "on_session"):
        raise invalid("Invalid usage: must be one of off_session or on_session.", param="usage")
    body = objects.setup_intent(
        customer_id=customer_id,
        metadata=p.metadata(),
        usage=usage,
        description=p.text("description"),
        payment_method=p.text("payment_method"),
    )
    row = await s.objects.add("setup_intent", body)
    await s.emit("setup_intent.created", body)
    if p.boolean("confirm"):
        return await confirm_setup_intent_row(s, row, p.text("payment_method"))
    return row.body


async def confirm_setup_intent(
    s: SandboxStripe, intent_id: str, p: Params
) -> dict[str, Any] | StripeApiError:
    row = await s.load(intent_id, "setup_intent")
    return await confirm_setup_intent_row(s, row, p.text("payment_method"))


async def confirm_setup_intent_row(
    s: SandboxStripe, row: SandboxObject, payment_method: str | None
) -> dict[str, Any] | StripeApiError:
    payment_method = payment_method or row.body.get("payment_method")
    if not payment_method:
        raise refused(
            "You cannot confirm this SetupIntent because it's missing a payment method.",
            code="setup_intent_unexpected_state",
        )
    if row.body["status"] not in SETUP_CONFIRMABLE:
        raise refused(
            f"You cannot confirm this SetupIntent because it has a status of {row.body['status']}.",
            code="setup_intent_unexpected_state",
        )
    method = await _resolve(s, payment_method)
    await _attempt(s, row, method)
    error = row.body.get("last_setup_error")
    if row.body["status"] == "requires_payment_method" and error:
        return StripeApiError(
            402,
            str(error["message"]),
            type="card_error",
            code=str(error["code"]),
            decline_code=error.get("decline_code"),
            extra={"setup_intent": copy.deepcopy(row.body)},
        )
    return row.body


def _test_card(method: SandboxObject) -> TestCard | None:
    return card_of_fingerprint((method.body.get("card") or {}).get("fingerprint"))


async def _attempt(
    s: SandboxStripe,
    row: SandboxObject,
    method: SandboxObject,
    *,
    authentication: Literal["pass", "fail"] | None = None,
) -> None:
    intent = row.body
    intent["payment_method"] = method.body["id"]
    card = _test_card(method)
    setup = card.setup if card is not None else "succeed"
    if authentication == "fail":
        await _setup_failed(
            s,
            row,
            code="setup_intent_authentication_failure",
            decline_code=None,
            message="We are unable to authenticate your payment method.",
        )
        return
    if setup == "authenticate" and authentication is None:
        intent.update(
            status="requires_action",
            next_action=objects.authenticate_next_action(
                f"{s.base}/sandbox/setup_intents/{intent['id']}/authenticate"
            ),
        )
        await s.objects.save(row, intent)
        await s.emit("setup_intent.requires_action", intent)
        return
    if setup in ("decline", "expired_card"):
        code = "expired_card" if setup == "expired_card" else "card_declined"
        await _setup_failed(
            s,
            row,
            code=code,
            decline_code="expired_card" if setup == "expired_card" else "generic_decline",
            message="Your card has expired."
            if setup == "expired_card"
            else "Your card was declined.",
        )
        return
    if intent.get("customer"):
        await attach(s, str(method.body["id"]), str(intent["customer"]))
    intent.update(status="succeeded", last_setup_error=None, next_action=None)
    await s.objects.save(row, intent)
    await s.emit("setup_intent.succeeded", intent)


async def _setup_failed(
    s: SandboxStripe,
    row: SandboxObject,
    *,
    code: str,
    decline_code: str | None,
    message: str,
) -> None:
    intent = row.body
    error: dict[str, Any] = {
        "type": "card_error",
        "code": code,
        "message": message,
        "payment_method": {"id": intent["payment_method"], "object": "payment_method"},
    }
    if decline_code is not None:
        error["decline_code"] = decline_code
    intent.update(status="requires_payment_method", last_setup_error=error, next_action=None)
    await s.objects.save(row, intent)
    await s.emit("setup_intent.setup_failed", intent)


# ---------------------------------------------------------------- page actions


async def page_attempt(s: SandboxStripe, intent_id: str, number: str) -> dict[str, Any]:
    """The customer picked a test card on the sandbox's SetupIntent page."""
    row = await s.load(intent_id, "setup_intent")
    if row.body["status"] not in SETUP_CONFIRMABLE:
        raise SetupPageError(f"This SetupIntent cannot be confirmed: it is {row.body['status']}.")
    await _attempt(s, row, await create_card(s, number))
    return row.body


async def page_authenticate(
    s: SandboxStripe, intent_id: str, result: Literal["pass", "fail"]
) -> dict[str, Any]:
    row = await s.load(intent_id, "setup_intent")
    if row.body["status"] != "requires_action":
        raise SetupPageError("This SetupIntent does not wait for authentication.")
    method = await s.load(str(row.body["payment_method"]), "payment_method")
    await _attempt(s, row, method, authentication=result)
    return row.body
