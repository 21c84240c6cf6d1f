"""The sandbox's Stripe API for payments: customers, Checkout Sessions, PaymentIntents,
saved cards (SetupIntents, PaymentMethods), charges and balance, refunds and disputes.
How an operation runs (idempotency, errors, expansion) is ``api_kit.py``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from payments_sandbox import api_billing, api_connect, saved_cards
from payments_sandbox.api_kit import Call, ObjectRoutes, add_calls, add_object_routes, respond
from payments_sandbox.errors import StripeApiError
from payments_sandbox.objects import random_tail
from payments_sandbox.service import SandboxStripe

router = APIRouter(prefix="/sandbox/stripe/v1")


# The parameters Stripe accepts for a Checkout Session and a PaymentIntent.
CHECKOUT_SESSION_PARAMS = (
    "adaptive_pricing after_expiration allow_promotion_codes automatic_tax "
    "billing_address_collection cancel_url client_reference_id consent_collection currency "
    "custom_fields custom_text customer customer_creation customer_email customer_update "
    "discounts expires_at invoice_creation line_items locale metadata mode "
    "payment_intent_data payment_method_collection payment_method_configuration "
    "payment_method_options payment_method_types phone_number_collection "
    "redirect_on_completion return_url saved_payment_method_options "
    "shipping_address_collection shipping_options submit_type success_url tax_id_collection "
    "ui_mode"
)
PAYMENT_INTENT_PARAMS = (
    "amount currency application_fee_amount automatic_payment_methods capture_method confirm "
    "confirmation_method customer description error_on_requires_action mandate_data metadata "
    "off_session on_behalf_of payment_method payment_method_options payment_method_types "
    "receipt_email return_url setup_future_usage shipping statement_descriptor "
    "statement_descriptor_suffix transfer_data transfer_group use_stripe_sdk"
)

add_calls(
    router,
    # customers
    Call(
        "POST",
        "/customers",
        SandboxStripe.create_customer,
        "address description email metadata name phone shipping payment_method "
        "preferred_locales tax_exempt invoice_settings",
    ),
    # checkout
    Call(
        "POST", "/checkout/sessions", SandboxStripe.create_checkout_session, CHECKOUT_SESSION_PARAMS
    ),
    Call(
        "POST",
        "/checkout/sessions/{session_id}/expire",
        lambda s, p, session_id: s.expire_checkout_session(session_id),
        expand=False,
    ),
    # payment intents
    Call("POST", "/payment_intents", SandboxStripe.create_payment_intent, PAYMENT_INTENT_PARAMS),
    Call(
        "POST",
        "/payment_intents/{intent_id}/confirm",
        lambda s, p, intent_id: s.confirm_payment_intent(intent_id, p),
        "payment_method return_url off_session mandate_data use_stripe_sdk "
        "payment_method_options receipt_email setup_future_usage shipping "
        "error_on_requires_action payment_method_types capture_method",
    ),
    Call(
        "POST",
        "/payment_intents/{intent_id}/cancel",
        lambda s, p, intent_id: s.cancel_payment_intent(intent_id, p),
        "cancellation_reason",
        expand=False,
    ),
    Call(
        "POST",
        "/payment_intents/{intent_id}/capture",
        lambda s, p, intent_id: s.capture_payment_intent(intent_id, p),
        "amount_to_capture application_fee_amount metadata statement_descriptor",
    ),
    # saved cards
    Call(
        "POST",
        "/setup_intents",
        saved_cards.create_setup_intent,
        "automatic_payment_methods confirm customer description metadata payment_method "
        "payment_method_types payment_method_options return_url usage use_stripe_sdk "
        "mandate_data on_behalf_of flow_directions single_use",
    ),
    Call(
        "POST",
        "/setup_intents/{intent_id}/confirm",
        lambda s, p, intent_id: saved_cards.confirm_setup_intent(s, intent_id, p),
        "payment_method return_url mandate_data use_stripe_sdk payment_method_options",
    ),
    Call(
        "POST",
        "/payment_methods",
        saved_cards.create_payment_method,
        "type card billing_details metadata",
        expand=False,
    ),
    Call(
        "POST",
        "/payment_methods/{payment_method_id}/attach",
        lambda s, p, payment_method_id: saved_cards.attach_api(s, payment_method_id, p),
        "customer",
        expand=False,
    ),
    Call(
        "POST",
        "/payment_methods/{payment_method_id}/detach",
        lambda s, p, payment_method_id: saved_cards.detach(s, payment_method_id),
        expand=False,
    ),
    # balance
    Call("GET", "/balance", lambda s, p: s.balance(), expand=False),
    # refunds and disputes
    Call(
        "POST",
        "/refunds",
        SandboxStripe.create_refund,
        "amount charge payment_intent metadata reason currency "
        "refund_application_fee reverse_transfer instructions_email origin",
    ),
    Call(
        "POST",
        "/disputes/{dispute_id}",
        lambda s, p, dispute_id: s.update_dispute(dispute_id, p),
        "evidence metadata submit",
        expand=False,
    ),
    Call(
        "POST",
        "/disputes/{dispute_id}/close",
        lambda s, p, dispute_id: s.close_dispute(dispute_id, "lost"),
        expand=False,
    ),
)


# ------------------------------------------------------------------ retrieve and list

add_object_routes(
    router,
    ObjectRoutes("customer", "customers"),
    ObjectRoutes(
        "checkout.session",
        "checkout/sessions",
        ("customer", "payment_intent", "status"),
        resource="checkout.session",
    ),
    ObjectRoutes(
        "payment_intent", "payment_intents", ("customer",), retrieve_allowed=("client_secret",)
    ),
    ObjectRoutes("setup_intent", "setup_intents", retrieve_allowed=("client_secret",)),
    ObjectRoutes("payment_method", "payment_methods", ("customer", "type")),
    ObjectRoutes("charge", "charges", ("customer", "payment_intent", "transfer_group")),
    # The sandbox's transfers are net of the fee: it makes no application fee objects,
    # so this answers Stripe's ``resource_missing`` for every id.
    ObjectRoutes("application_fee", "application_fees"),
    ObjectRoutes(
        "balance_transaction",
        "balance_transactions",
        ("currency", "source", "type"),
        also_allowed=("payout",),
    ),
    ObjectRoutes("refund", "refunds", ("charge", "payment_intent")),
    ObjectRoutes("dispute", "disputes", ("charge", "payment_intent")),
)

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
