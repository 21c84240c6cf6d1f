"""The sandbox's Stripe API for payments: customers, Checkout Sessions, PaymentIntents,
saved cards (SetupIntents, PaymentMethods), charges and balance, refunds and disputes.
How an operation runs (idempotency, errors, expansion) is ``api_kit.py``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from payments_sandbox import api_billing, api_connect, saved_cards
from payments_sandbox.api_kit import (
    Result,
    execute,
    expanded,
    list_objects,
    names,
    respond,
    retrieve,
)
from payments_sandbox.errors import StripeApiError
from payments_sandbox.objects import random_tail
from payments_sandbox.params import Params
from payments_sandbox.service import SandboxStripe

router = APIRouter(prefix="/sandbox/stripe/v1")


# ------------------------------------------------------------------ customers


@router.post("/customers")
async def create_customer(request: Request) -> Response:
    allowed = names(
        "address description email metadata name phone shipping payment_method "
        "preferred_locales tax_exempt invoice_settings"
    )
    return await execute(request, expanded(SandboxStripe.create_customer), allowed)


@router.get("/customers/{customer_id}")
async def retrieve_customer(request: Request, customer_id: str) -> Response:
    return await execute(request, retrieve("customer", customer_id), ())


# ------------------------------------------------------------------ checkout

CHECKOUT_SESSION_PARAMS = (
    "adaptive_pricing",
    "after_expiration",
    "allow_promotion_codes",
    "automatic_tax",
    "billing_address_collection",
    "cancel_url",
    "client_reference_id",
    "consent_collection",
    "currency",
    "custom_fields",
    "custom_text",
    "customer",
    "customer_creation",
    "customer_email",
    "customer_update",
    "discounts",
    "expires_at",
    "invoice_creation",
    "line_items",
    "locale",
    "metadata",
    "mode",
    "payment_intent_data",
    "payment_method_collection",
    "payment_method_configuration",
    "payment_method_options",
    "payment_method_types",
    "phone_number_collection",
    "redirect_on_completion",
    "return_url",
    "saved_payment_method_options",
    "shipping_address_collection",
    "shipping_options",
    "submit_type",
    "success_url",
    "tax_id_collection",
    "ui_mode",
)


@router.post("/checkout/sessions")
async def create_checkout_session(request: Request) -> Response:
    return await execute(
        request, expanded(SandboxStripe.create_checkout_session), CHECKOUT_SESSION_PARAMS
    )


@router.get("/checkout/sessions/{session_id}")
async def retrieve_checkout_session(request: Request, session_id: str) -> Response:
    return await execute(
        request, retrieve("checkout.session", session_id, resource="checkout.session"), ()
    )


@router.get("/checkout/sessions")
async def list_checkout_sessions(request: Request) -> Response:
    return await list_objects(
        request,
        "checkout.session",
        "/v1/checkout/sessions",
        ("customer", "payment_intent", "status"),
    )


@router.post("/checkout/sessions/{session_id}/expire")
async def expire_checkout_session(request: Request, session_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.expire_checkout_session(session_id)

    return await execute(request, run, ())


# ------------------------------------------------------------------ payment intents

PAYMENT_INTENT_PARAMS = (
    "amount",
    "currency",
    "application_fee_amount",
    "automatic_payment_methods",
    "capture_method",
    "confirm",
    "confirmation_method",
    "customer",
    "description",
    "error_on_requires_action",
    "mandate_data",
    "metadata",
    "off_session",
    "on_behalf_of",
    "payment_method",
    "payment_method_options",
    "payment_method_types",
    "receipt_email",
    "return_url",
    "setup_future_usage",
    "shipping",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_data",
    "transfer_group",
    "use_stripe_sdk",
)


@router.post("/payment_intents")
async def create_payment_intent(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        result = await service.create_payment_intent(p)
        if isinstance(result, StripeApiError):
            return result
        return await service.render(result, p.expand())

    return await execute(request, run, PAYMENT_INTENT_PARAMS)


@router.get("/payment_intents/{intent_id}")
async def retrieve_payment_intent(request: Request, intent_id: str) -> Response:
    return await execute(request, retrieve("payment_intent", intent_id), ("client_secret",))


@router.get("/payment_intents")
async def list_payment_intents(request: Request) -> Response:
    return await list_objects(request, "payment_intent", "/v1/payment_intents", ("customer",))


@router.post("/payment_intents/{intent_id}/confirm")
async def confirm_payment_intent(request: Request, intent_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        result = await service.confirm_payment_intent(intent_id, p)
        if isinstance(result, StripeApiError):
            return result
        return await service.render(result, p.expand())

    allowed = names(
        "payment_method return_url off_session mandate_data use_stripe_sdk "
        "payment_method_options receipt_email setup_future_usage shipping "
        "error_on_requires_action payment_method_types capture_method"
    )
    return await execute(request, run, allowed)


@router.post("/payment_intents/{intent_id}/cancel")
async def cancel_payment_intent(request: Request, intent_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.cancel_payment_intent(intent_id, p)

    return await execute(request, run, ("cancellation_reason",))


@router.post("/payment_intents/{intent_id}/capture")
async def capture_payment_intent(request: Request, intent_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.render(await service.capture_payment_intent(intent_id, p), p.expand())

    return await execute(
        request,
        run,
        names("amount_to_capture application_fee_amount metadata statement_descriptor"),
    )


# ------------------------------------------------------------------ saved cards


@router.post("/setup_intents")
async def create_setup_intent(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        result = await saved_cards.create_setup_intent(service, p)
        if isinstance(result, StripeApiError):
            return result
        return await service.render(result, p.expand())

    allowed = names(
        "automatic_payment_methods confirm customer description metadata payment_method "
        "payment_method_types payment_method_options return_url usage use_stripe_sdk "
        "mandate_data on_behalf_of flow_directions single_use"
    )
    return await execute(request, run, allowed)


@router.get("/setup_intents/{intent_id}")
async def retrieve_setup_intent(request: Request, intent_id: str) -> Response:
    return await execute(request, retrieve("setup_intent", intent_id), ("client_secret",))


@router.post("/setup_intents/{intent_id}/confirm")
async def confirm_setup_intent(request: Request, intent_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        result = await saved_cards.confirm_setup_intent(service, intent_id, p)
        if isinstance(result, StripeApiError):
            return result
        return await service.render(result, p.expand())

    allowed = names("payment_method return_url mandate_data use_stripe_sdk payment_method_options")
    return await execute(request, run, allowed)


@router.post("/payment_methods")
async def create_payment_method(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await saved_cards.create_payment_method(service, p)

    return await execute(request, run, names("type card billing_details metadata"))


@router.get("/payment_methods/{payment_method_id}")
async def retrieve_payment_method(request: Request, payment_method_id: str) -> Response:
    return await execute(request, retrieve("payment_method", payment_method_id), ())


@router.get("/payment_methods")
async def list_payment_methods(request: Request) -> Response:
    return await list_objects(
        request, "payment_method", "/v1/payment_methods", ("customer", "type")
    )


@router.post("/payment_methods/{payment_method_id}/attach")
async def attach_payment_method(request: Request, payment_method_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await saved_cards.attach_api(service, payment_method_id, p)

    return await execute(request, run, ("customer",))


@router.post("/payment_methods/{payment_method_id}/detach")
async def detach_payment_method(request: Request, payment_method_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await saved_cards.detach(service, payment_method_id)

    return await execute(request, run, ())


# ------------------------------------------------------------------ charges and balance


@router.get("/charges/{charge_id}")
async def retrieve_charge(request: Request, charge_id: str) -> Response:
    return await execute(request, retrieve("charge", charge_id), ())


@router.get("/application_fees/{fee_id}")
async def retrieve_application_fee(request: Request, fee_id: str) -> Response:
    """The sandbox's transfers are net of the fee: it makes no application fee objects, so
    this answers Stripe's ``resource_missing`` for every id."""
    return await execute(request, retrieve("application_fee", fee_id), ("expand",))


@router.get("/charges")
async def list_charges(request: Request) -> Response:
    return await list_objects(
        request, "charge", "/v1/charges", ("customer", "payment_intent", "transfer_group")
    )


@router.get("/balance")
async def retrieve_balance(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.balance()

    return await execute(request, run, ())


@router.get("/balance_transactions/{txn_id}")
async def retrieve_balance_transaction(request: Request, txn_id: str) -> Response:
    return await execute(request, retrieve("balance_transaction", txn_id), ())


@router.get("/balance_transactions")
async def list_balance_transactions(request: Request) -> Response:
    return await list_objects(
        request,
        "balance_transaction",
        "/v1/balance_transactions",
        ("currency", "source", "type"),
        also_allowed=("payout",),
    )


# ------------------------------------------------------------------ refunds and disputes


@router.post("/refunds")
async def create_refund(request: Request) -> Response:
    allowed = names(
        "amount charge payment_intent metadata reason currency "
        "refund_application_fee reverse_transfer instructions_email origin"
    )
    return await execute(request, expanded(SandboxStripe.create_refund), allowed)


@router.get("/refunds/{refund_id}")
async def retrieve_refund(request: Request, refund_id: str) -> Response:
    return await execute(request, retrieve("refund", refund_id), ())


@router.get("/refunds")
async def list_refunds(request: Request) -> Response:
    return await list_objects(request, "refund", "/v1/refunds", ("charge", "payment_intent"))


@router.get("/disputes/{dispute_id}")
async def retrieve_dispute(request: Request, dispute_id: str) -> Response:
    return await execute(request, retrieve("dispute", dispute_id), ())


@router.get("/disputes")
async def list_disputes(request: Request) -> Response:
    return await list_objects(request, "dispute", "/v1/disputes", ("charge", "payment_intent"))


@router.post("/disputes/{dispute_id}")
async def update_dispute(request: Request, dispute_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.update_dispute(dispute_id, p)

    return await execute(request, run, ("evidence", "metadata", "submit"))


@router.post("/disputes/{dispute_id}/close")
async def close_dispute(request: Request, dispute_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.close_dispute(dispute_id, "lost")

    return await execute(request, run, ())


# Connect and Billing routes, then Stripe's 404 for every path not served: last, since it
# matches everything.
router.include_router(api_connect.router)
router.include_router(api_billing.router)


@router.api_route("/{path:path}", methods=["GET", "POST", "DELETE"], include_in_schema=False)
async def unknown_route(request: Request, path: str) -> Response:
    """Stripe's answer to a path it does not serve (the sandbox serves a subset)."""
    request_id = "req_" + random_tail(14)
    error = StripeApiError(
        404,
        f"Unrecognized request URL ({request.method}: /v1/{path}). The sandbox implements "
        "the calls this service makes; see docs/sandbox.md.",
        stored=False,
    )
    return respond(404, error.body(request_id), request_id, request)
