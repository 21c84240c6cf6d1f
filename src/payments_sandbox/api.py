"""The sandbox's Stripe-compatible HTTP API: ``/sandbox/stripe/v1/...``.

With no Stripe key, ``settings.stripe_api_base`` points the real ``StripeGateway``
(stripe-python over httpx) here, so the service talks to the sandbox exactly as it
talks to Stripe: form-encoded parameters, ``Authorization: Bearer sk_test_...``,
``Idempotency-Key`` and ``Stripe-Account`` headers, Stripe's JSON objects and Stripe's
error bodies and statuses (stripe-python raises the same exceptions).

Idempotency as Stripe: a POST's key is claimed in the request's own transaction, so the
object and the stored response commit together; a retry with the same parameters gets
the stored response (``Idempotent-Replayed: true``), with other parameters Stripe's
``idempotency_error``; a concurrent twin waits for the first and then replays it.
Requests whose parameters fail validation store nothing, as on Stripe.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from payments_api.stripe.base import STRIPE_API_VERSION
from payments_sandbox import saved_cards
from payments_sandbox.billing import SandboxBilling
from payments_sandbox.errors import StripeApiError, invalid, no_such
from payments_sandbox.objects import random_tail
from payments_sandbox.params import Params, decode
from payments_sandbox.repository import EventRepository, IdempotencyRepository
from payments_sandbox.service import SandboxStripe
from payments_sandbox.wiring import kick, sessionmaker_of, settings_of

router = APIRouter(prefix="/sandbox/stripe/v1")

Result = dict[str, Any] | StripeApiError
Operation = Callable[[SandboxStripe, Params], Awaitable[Result]]

LIST_PARAMS = ("limit", "starting_after", "ending_before", "created")


def _names(words: str) -> tuple[str, ...]:
    """The top-level parameters an endpoint accepts (Stripe refuses any other)."""
    return tuple(words.split())


def _api_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":  # curl -u sk_test_...:
        try:
            return base64.b64decode(value).decode().split(":", 1)[0]
        except ValueError:
            return None
    return None


def _response(
    status: int,
    body: dict[str, Any],
    request_id: str,
    request: Request,
    *,
    replayed: bool = False,
) -> Response:
    headers = {
        "Request-Id": request_id,
        "Stripe-Version": request.headers.get("stripe-version") or STRIPE_API_VERSION,
        "Cache-Control": "no-cache, no-store",
    }
    key = request.headers.get("idempotency-key")
    if key and request.method == "POST":
        headers["Idempotency-Key"] = key
        if replayed:
            headers["Idempotent-Replayed"] = "true"
    if request.headers.get("stripe-account"):
        headers["Stripe-Account"] = request.headers["stripe-account"]
    return JSONResponse(body, status_code=status, headers=headers)


async def execute(request: Request, operation: Operation, allowed: tuple[str, ...]) -> Response:
    """Authenticate, decode, apply idempotency and run ``operation`` in one transaction."""
    request_id = "req_" + random_tail(14)
    key = _api_key(request)
    if not key or not key.startswith(("sk_test_", "rk_test_")):
        return _response(
            401,
            StripeApiError(
                401,
                "Invalid API Key provided: the sandbox accepts test keys (sk_test_...) only.",
                stored=False,
            ).body(),
            request_id,
            request,
        )
    write = request.method == "POST"
    if write:
        raw = (await request.body()).decode("utf-8", errors="replace")
        pairs = parse_qsl(raw, keep_blank_values=True)
    else:
        pairs = list(request.query_params.multi_items())
    account = request.headers.get("stripe-account") or None
    idempotency_key = request.headers.get("idempotency-key") if write else None
    fingerprint = hashlib.sha256(
        json.dumps([request.method, request.url.path, sorted(pairs)]).encode()
    ).hexdigest()
    scope = account or ""
    settings = settings_of(request)
    outcome: tuple[int, dict[str, Any], bool]
    try:
        async with sessionmaker_of(request).begin() as session:
            service = SandboxStripe(
                session,
                settings,
                account=account,
                request_id=request_id,
                idempotency_key=idempotency_key,
            )
            keys = IdempotencyRepository(session)
            claimed = True
            if idempotency_key is not None:
                if len(idempotency_key) > 255:
                    raise invalid(
                        "Idempotency keys may be at most 255 characters long.",
                        param="Idempotency-Key",
                    )
                claimed = await keys.claim(scope, idempotency_key, fingerprint, request_id)
            if not claimed:
                assert idempotency_key is not None  # noqa: S101 - only keys are claimed
                stored = await keys.get(scope, idempotency_key)
                assert stored is not None  # noqa: S101 - the conflict was this row
                if stored.fingerprint != fingerprint:
                    raise StripeApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with. Try using a key other than "
                        f"'{idempotency_key}' if you meant to execute a different request.",
                        type="idempotency_error",
                        stored=False,
                    )
                outcome = (stored.status_code, stored.response, True)
            else:
                await service.check_account_header()
                try:
                    async with session.begin_nested():
                        result = await operation(service, Params(decode(pairs), allowed=allowed))
                except StripeApiError as exc:
                    if not exc.stored:
                        raise  # nothing happened and nothing is kept, the key included
                    result = exc
                if isinstance(result, StripeApiError):
                    status, body = result.status, result.body(request_id)
                else:
                    status, body = 200, result
                if idempotency_key is not None:
                    await keys.store(scope, idempotency_key, status, body)
                outcome = (status, body, False)
    except StripeApiError as exc:
        return _response(exc.status, exc.body(request_id), request_id, request)
    if write:
        kick(request)
    return _response(outcome[0], outcome[1], request_id, request, replayed=outcome[2])


def _expanded(
    fetch: Callable[[SandboxStripe, Params], Awaitable[dict[str, Any]]],
) -> Operation:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.render(await fetch(service, p), p.expand())

    return run


def _retrieve(type_: str, object_id: str, *, resource: str | None = None) -> Operation:
    async def fetch(service: SandboxStripe, p: Params) -> dict[str, Any]:
        return (await service.load(object_id, type_, resource=resource)).body

    return _expanded(fetch)


# ------------------------------------------------------------------ customers


@router.post("/customers")
async def create_customer(request: Request) -> Response:
    allowed = _names(
        "address description email metadata name phone shipping payment_method "
        "preferred_locales tax_exempt invoice_settings"
    )
    return await execute(request, _expanded(SandboxStripe.create_customer), allowed)


@router.get("/customers/{customer_id}")
async def retrieve_customer(request: Request, customer_id: str) -> Response:
    return await execute(request, _retrieve("customer", customer_id), ())


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
        request, _expanded(SandboxStripe.create_checkout_session), CHECKOUT_SESSION_PARAMS
    )


@router.get("/checkout/sessions/{session_id}")
async def retrieve_checkout_session(request: Request, session_id: str) -> Response:
    return await execute(
        request, _retrieve("checkout.session", session_id, resource="checkout.session"), ()
    )


@router.get("/checkout/sessions")
async def list_checkout_sessions(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(
            p,
            "checkout.session",
            "/v1/checkout/sessions",
            filters=("customer", "payment_intent", "status"),
        )

    return await execute(request, run, (*LIST_PARAMS, "customer", "payment_intent", "status"))


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
    return await execute(request, _retrieve("payment_intent", intent_id), ("client_secret",))


@router.get("/payment_intents")
async def list_payment_intents(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(
            p, "payment_intent", "/v1/payment_intents", filters=("customer",)
        )

    return await execute(request, run, (*LIST_PARAMS, "customer"))


@router.post("/payment_intents/{intent_id}/confirm")
async def confirm_payment_intent(request: Request, intent_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        result = await service.confirm_payment_intent(intent_id, p)
        if isinstance(result, StripeApiError):
            return result
        return await service.render(result, p.expand())

    allowed = _names(
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
        _names("amount_to_capture application_fee_amount metadata statement_descriptor"),
    )


# ------------------------------------------------------------------ saved cards


@router.post("/setup_intents")
async def create_setup_intent(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        result = await saved_cards.create_setup_intent(service, p)
        if isinstance(result, StripeApiError):
            return result
        return await service.render(result, p.expand())

    allowed = _names(
        "automatic_payment_methods confirm customer description metadata payment_method "
        "payment_method_types payment_method_options return_url usage use_stripe_sdk "
        "mandate_data on_behalf_of flow_directions single_use"
    )
    return await execute(request, run, allowed)


@router.get("/setup_intents/{intent_id}")
async def retrieve_setup_intent(request: Request, intent_id: str) -> Response:
    return await execute(request, _retrieve("setup_intent", intent_id), ("client_secret",))


@router.post("/setup_intents/{intent_id}/confirm")
async def confirm_setup_intent(request: Request, intent_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        result = await saved_cards.confirm_setup_intent(service, intent_id, p)
        if isinstance(result, StripeApiError):
            return result
        return await service.render(result, p.expand())

    allowed = _names("payment_method return_url mandate_data use_stripe_sdk payment_method_options")
    return await execute(request, run, allowed)


@router.post("/payment_methods")
async def create_payment_method(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await saved_cards.create_payment_method(service, p)

    return await execute(request, run, _names("type card billing_details metadata"))


@router.get("/payment_methods/{payment_method_id}")
async def retrieve_payment_method(request: Request, payment_method_id: str) -> Response:
    return await execute(request, _retrieve("payment_method", payment_method_id), ())


@router.get("/payment_methods")
async def list_payment_methods(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(
            p, "payment_method", "/v1/payment_methods", filters=("customer", "type")
        )

    return await execute(request, run, (*LIST_PARAMS, "customer", "type"))


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
    return await execute(request, _retrieve("charge", charge_id), ())


@router.get("/application_fees/{fee_id}")
async def retrieve_application_fee(request: Request, fee_id: str) -> Response:
    """The sandbox's transfers are net of the fee: it makes no application fee objects, so
    this answers Stripe's ``resource_missing`` for every id."""
    return await execute(request, _retrieve("application_fee", fee_id), ("expand",))


@router.get("/charges")
async def list_charges(request: Request) -> Response:
    filters = ("customer", "payment_intent", "transfer_group")

    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(p, "charge", "/v1/charges", filters=filters)

    return await execute(request, run, (*LIST_PARAMS, *filters))


@router.get("/balance")
async def retrieve_balance(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.balance()

    return await execute(request, run, ())


@router.get("/balance_transactions/{txn_id}")
async def retrieve_balance_transaction(request: Request, txn_id: str) -> Response:
    return await execute(request, _retrieve("balance_transaction", txn_id), ())


@router.get("/balance_transactions")
async def list_balance_transactions(request: Request) -> Response:
    filters = ("currency", "source", "type")

    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(
            p, "balance_transaction", "/v1/balance_transactions", filters=filters
        )

    return await execute(request, run, (*LIST_PARAMS, *filters, "payout"))


# ------------------------------------------------------------------ refunds and disputes


@router.post("/refunds")
async def create_refund(request: Request) -> Response:
    allowed = _names(
        "amount charge payment_intent metadata reason currency "
        "refund_application_fee reverse_transfer instructions_email origin"
    )
    return await execute(request, _expanded(SandboxStripe.create_refund), allowed)


@router.get("/refunds/{refund_id}")
async def retrieve_refund(request: Request, refund_id: str) -> Response:
    return await execute(request, _retrieve("refund", refund_id), ())


@router.get("/refunds")
async def list_refunds(request: Request) -> Response:
    filters = ("charge", "payment_intent")

    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(p, "refund", "/v1/refunds", filters=filters)

    return await execute(request, run, (*LIST_PARAMS, *filters))


@router.get("/disputes/{dispute_id}")
async def retrieve_dispute(request: Request, dispute_id: str) -> Response:
    return await execute(request, _retrieve("dispute", dispute_id), ())


@router.get("/disputes")
async def list_disputes(request: Request) -> Response:
    filters = ("charge", "payment_intent")

    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(p, "dispute", "/v1/disputes", filters=filters)

    return await execute(request, run, (*LIST_PARAMS, *filters))


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


# ------------------------------------------------------------------ connect

ACCOUNT_PARAMS = (
    "type",
    "country",
    "email",
    "capabilities",
    "business_type",
    "business_profile",
    "company",
    "controller",
    "default_currency",
    "external_account",
    "individual",
    "metadata",
    "settings",
    "tos_acceptance",
)


@router.post("/accounts")
async def create_account(request: Request) -> Response:
    return await execute(request, _expanded(SandboxStripe.create_account), ACCOUNT_PARAMS)


@router.get("/accounts/{account_id}")
async def retrieve_account(request: Request, account_id: str) -> Response:
    return await execute(request, _retrieve("account", account_id), ())


@router.get("/account")
async def retrieve_own_account(request: Request) -> Response:
    """``GET /v1/account``: the account of the ``Stripe-Account`` header."""

    async def fetch(service: SandboxStripe, p: Params) -> dict[str, Any]:
        if service.account is None:
            raise invalid("The sandbox platform has no account object; send Stripe-Account.")
        return (await service.load(service.account, "account")).body

    return await execute(request, _expanded(fetch), ())


@router.post("/account_links")
async def create_account_link(request: Request) -> Response:
    allowed = _names("account type refresh_url return_url collect collection_options")
    return await execute(request, _expanded(SandboxStripe.create_account_link), allowed)


@router.post("/accounts/{account_id}/login_links")
async def create_login_link(request: Request, account_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.create_login_link(account_id)

    return await execute(request, run, ())


@router.post("/transfers")
async def create_transfer(request: Request) -> Response:
    allowed = _names(
        "amount currency destination description metadata source_transaction "
        "source_type transfer_group"
    )
    return await execute(request, _expanded(SandboxStripe.create_transfer), allowed)


@router.get("/transfers/{transfer_id}")
async def retrieve_transfer(request: Request, transfer_id: str) -> Response:
    return await execute(request, _retrieve("transfer", transfer_id), ())


@router.get("/transfers")
async def list_transfers(request: Request) -> Response:
    filters = ("destination", "transfer_group")

    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(p, "transfer", "/v1/transfers", filters=filters)

    return await execute(request, run, (*LIST_PARAMS, *filters))


@router.post("/transfers/{transfer_id}/reversals")
async def create_transfer_reversal(request: Request, transfer_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.reverse_transfer(transfer_id, p)

    allowed = _names("amount description metadata refund_application_fee")
    return await execute(request, run, allowed)


@router.post("/payouts")
async def create_payout(request: Request) -> Response:
    allowed = _names(
        "amount currency description destination metadata method source_type statement_descriptor"
    )
    return await execute(request, _expanded(SandboxStripe.create_payout), allowed)


@router.get("/payouts/{payout_id}")
async def retrieve_payout(request: Request, payout_id: str) -> Response:
    return await execute(request, _retrieve("payout", payout_id), ())


@router.get("/payouts")
async def list_payouts(request: Request) -> Response:
    filters = ("status", "destination")

    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(p, "payout", "/v1/payouts", filters=filters)

    return await execute(request, run, (*LIST_PARAMS, *filters, "arrival_date"))


# ------------------------------------------------------------------ events


@router.get("/events/{event_id}")
async def retrieve_event(request: Request, event_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        row = await EventRepository(service.session).get(event_id)
        if row is None or row.account != service.account:
            raise StripeApiError(
                404, f"No such event: '{event_id}'", code="resource_missing", param="id"
            )
        return row.payload

    return await execute(request, run, ())


@router.get("/events")
async def list_events(request: Request) -> Response:
    """Events of the platform (or of the ``Stripe-Account``), newest first;
    ``delivery_success=false``: those the service has not acknowledged yet."""

    async def run(service: SandboxStripe, p: Params) -> Result:
        limit = p.integer("limit", minimum=1) or 10
        if limit > 100:
            raise invalid("This value must be less than or equal to 100.", param="limit")
        types = p.raw("types")
        wanted = [str(t) for t in types] if isinstance(types, list) else []
        if p.text("type"):
            wanted.append(p.required_text("type"))
        events = EventRepository(service.session)
        before = None
        cursor = p.text("starting_after")
        if cursor is not None:
            row = await events.get(cursor)
            if row is None:
                raise no_such("event", cursor, param="starting_after")
            before = row.seq
        created: dict[str, int] = {}
        for op in ("gt", "gte", "lt", "lte"):
            bound = p.integer(f"created.{op}")
            if bound is not None:
                created[op] = bound
        delivered = p.raw("delivery_success")
        rows, has_more = await events.page(
            account=service.account,
            types=wanted,
            limit=limit,
            starting_after=before,
            delivered=None if delivered is None else p.boolean("delivery_success"),
            created=created,
        )
        return {
            "object": "list",
            "data": [row.payload for row in rows],
            "has_more": has_more,
            "url": "/v1/events",
        }

    allowed = _names("limit starting_after ending_before type types created delivery_success")
    return await execute(request, run, allowed)


# ------------------------------------------------------------------ billing


def _billing(
    call: Callable[[SandboxBilling, Params], Awaitable[dict[str, Any]]],
) -> Operation:
    async def fetch(service: SandboxStripe, p: Params) -> dict[str, Any]:
        return await call(SandboxBilling(service), p)

    return _expanded(fetch)


@router.post("/products")
async def create_product(request: Request) -> Response:
    allowed = _names("id name description active metadata marketing_features")
    return await execute(request, _billing(SandboxBilling.create_product), allowed)


@router.get("/products/{product_id}")
async def retrieve_product(request: Request, product_id: str) -> Response:
    return await execute(request, _retrieve("product", product_id), ())


@router.get("/products")
async def list_products(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(p, "product", "/v1/products", filters=("active",))

    return await execute(request, run, (*LIST_PARAMS, "active"))


@router.post("/prices")
async def create_price(request: Request) -> Response:
    allowed = _names("product currency unit_amount recurring active lookup_key nickname metadata")
    return await execute(request, _billing(SandboxBilling.create_price), allowed)


@router.get("/prices/{price_id}")
async def retrieve_price(request: Request, price_id: str) -> Response:
    return await execute(request, _retrieve("price", price_id), ())


@router.post("/prices/{price_id}")
async def update_price(request: Request, price_id: str) -> Response:
    return await execute(
        request,
        _billing(lambda billing, p: billing.update_price(price_id, p)),
        _names("active metadata"),
    )


@router.get("/prices")
async def list_prices(request: Request) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(p, "price", "/v1/prices", filters=("type", "product"))

    return await execute(request, run, (*LIST_PARAMS, "type", "product", "active"))


@router.post("/subscriptions")
async def create_subscription(request: Request) -> Response:
    allowed = _names(
        "customer items default_payment_method metadata trial_from_plan payment_behavior "
        "payment_settings"
    )
    return await execute(request, _billing(SandboxBilling.create_subscription), allowed)


@router.get("/subscriptions/{subscription_id}")
async def retrieve_subscription(request: Request, subscription_id: str) -> Response:
    return await execute(request, _retrieve("subscription", subscription_id), ())


@router.post("/subscriptions/{subscription_id}")
async def update_subscription(request: Request, subscription_id: str) -> Response:
    allowed = _names(
        "cancel_at_period_end items proration_behavior proration_date default_payment_method "
        "pause_collection"
    )
    return await execute(
        request,
        _billing(lambda billing, p: billing.update_subscription(subscription_id, p)),
        allowed,
    )


@router.delete("/subscriptions/{subscription_id}")
async def cancel_subscription(request: Request, subscription_id: str) -> Response:
    return await execute(
        request,
        _billing(lambda billing, p: billing.cancel_subscription(subscription_id)),
        _names("invoice_now prorate"),
    )


@router.get("/invoices/{invoice_id}")
async def retrieve_invoice(request: Request, invoice_id: str) -> Response:
    return await execute(request, _retrieve("invoice", invoice_id), ())


@router.post("/invoices/create_preview")
async def preview_invoice(request: Request) -> Response:
    allowed = _names("customer subscription subscription_details")
    return await execute(request, _billing(SandboxBilling.preview), allowed)


@router.get("/invoice_payments")
async def list_invoice_payments(request: Request) -> Response:
    return await execute(
        request, _billing(SandboxBilling.invoice_payments), (*LIST_PARAMS, "invoice")
    )


@router.post("/test_helpers/test_clocks/{clock_id}/advance")
async def advance_test_clock(request: Request, clock_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        return await SandboxBilling(service).advance_clock(
            clock_id, p.required_integer("frozen_time", minimum=0)
        )

    return await execute(request, run, _names("frozen_time"))


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
    return _response(404, error.body(request_id), request_id, request)
