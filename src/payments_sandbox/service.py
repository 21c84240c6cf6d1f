"""The sandbox's Stripe: the objects, the rules Stripe enforces, and the events it emits.

One ``SandboxStripe`` per request, on that request's database transaction. API
operations (called by ``api.py`` for ``/sandbox/stripe/v1/...``) take ``Params`` and
return Stripe objects; page actions (called by ``pages.py``: pay, decline, onboard,
dispute, ...) are what a customer, payee or Stripe itself would do. Every state change
writes the events it causes into the outbox in the same transaction, so an event is
delivered only if the change committed (see ``events.py``).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.money import exponent, format_minor, proportional_part
from payments_api.settings import Settings
from payments_api.stripe.base import STRIPE_API_VERSION
from payments_sandbox import objects
from payments_sandbox.billing import SandboxBilling
from payments_sandbox.cards import card_of_fingerprint, outcome
from payments_sandbox.errors import (
    StripeApiError,
    invalid,
    missing_param,
    no_such,
    refused,
)
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params
from payments_sandbox.repository import EventRepository, ObjectRepository

Card = Literal[
    "success",
    "decline",
    "insufficient_funds",
    "3ds_required",
    "3ds_pass",
    "3ds_fail",
    "authentication_required",
    "expired_card",
]

# Stripe's test PaymentMethods (https://docs.stripe.com/testing) and what they do here.
TEST_PAYMENT_METHODS: dict[str, Card] = {
    "pm_card_visa": "success",
    "pm_card_mastercard": "success",
    "pm_card_amex": "success",
    "pm_card_us": "success",
    "pm_card_createDispute": "success",
    "pm_card_chargeDeclined": "decline",
    "pm_card_visa_chargeDeclined": "decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_authenticationRequired": "3ds_required",
    "pm_card_threeDSecure2Required": "3ds_required",
    "pm_card_threeDSecureRequired": "3ds_required",
    "pm_card_authenticationRequiredOnSetup": "3ds_required",
    "pm_card_chargeCustomerFail": "decline",
    "pm_card_chargeDeclinedExpiredCard": "expired_card",
}
OPEN_DISPUTE_STATUSES = ("warning_needs_response", "needs_response", "under_review")
CONFIRMABLE = ("requires_payment_method", "requires_confirmation")
# A PaymentIntent below this many minor units is refused (Stripe: 0.50 usd and alike).
MINIMUM_CHARGE_MINOR = {0: 50, 2: 50, 3: 500}
ACCOUNT_LINK_TTL_SECONDS = 300


class PageError(Exception):
    """A sandbox page action that cannot happen (shown on the page, nothing changes)."""


def _minimum_charge(currency: str) -> int:
    return MINIMUM_CHARGE_MINOR.get(exponent(currency), 50)


def _money(amount: int, currency: str) -> str:
    return format_minor(amount, currency)


class SandboxStripe:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        *,
        account: str | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.account = account
        """The ``Stripe-Account`` of the request: whose objects it sees and makes."""
        self.request_id = request_id
        self.idempotency_key = idempotency_key
        self.objects = ObjectRepository(session)
        self.events = EventRepository(session)
        self.base = settings.public_base_url.rstrip("/")

    # ---------------------------------------------------------------- plumbing

    async def emit(
        self,
        type_: str,
        data_object: dict[str, Any],
        *,
        account: str | None = None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write an event to the outbox (delivered once this transaction commits).
        Connect events (``account`` set) go to the Connect endpoint, as Stripe's do."""
        payload = objects.event(
            type=type_,
            data_object=data_object,
            api_version=STRIPE_API_VERSION,
            account=account,
            request_id=self.request_id,
            idempotency_key=self.idempotency_key,
            previous_attributes=previous,
        )
        await self.events.add(payload)
        return payload

    async def load(
        self,
        object_id: str,
        type_: str,
        *,
        resource: str | None = None,
        param: str | None = "id",
        account: str | Literal["any"] | None = "any",
    ) -> SandboxObject:
        """The object, locked for this transaction; Stripe's 404 (or 400 for a bad
        parameter) when unknown, of another type, or on another account."""
        row = await self.objects.get(object_id, for_update=True)
        scope = self.account if account == "any" else account
        if row is None or row.type != type_ or (type_ != "account" and row.account != scope):
            name = resource or type_.replace(".", " ").replace("_", " ")
            raise no_such(name, object_id, param=param)
        return row

    async def check_account_header(self) -> None:
        """A ``Stripe-Account`` header must name one of the platform's accounts."""
        if self.account is None:
            return
        row = await self.objects.get(self.account)
        if row is None or row.type != "account":
            raise StripeApiError(
                403,
                f"The provided key does not have access to account '{self.account}' (or that "
                "account does not exist). Application access may have been revoked.",
                code="account_invalid",
                stored=False,
            )

    async def render(self, body: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        """The object as returned, with ``expand[]`` paths replaced by the objects."""
        result = copy.deepcopy(body)
        for path in expand:
            await self._expand(result, path.split("."))
        return result

    async def _expand(self, node: Any, parts: list[str]) -> None:
        if not parts:
            return
        if isinstance(node, list):
            for item in node:
                await self._expand(item, parts)
            return
        if not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        value = node.get(head)
        if isinstance(value, str) and "_" in value:
            row = await self.objects.get(value)
            if row is not None:
                value = copy.deepcopy(row.body)
                node[head] = value
        await self._expand(value, rest)

    async def listing(
        self,
        p: Params,
        type_: str,
        url: str,
        *,
        filters: tuple[str, ...] = (),
        account: str | Literal["any"] | None = "any",
        any_account: bool = False,
    ) -> dict[str, Any]:
        """Stripe's list object: ``limit`` (1-100, default 10), ``starting_after`` /
        ``ending_before`` cursors, ``created`` ranges and equality filters."""
        limit = p.integer("limit", minimum=1) or 10
        if limit > 100:
            raise invalid("This value must be less than or equal to 100.", param="limit")
        scope = self.account if account == "any" else account
        cursors: dict[str, int | None] = {}
        for name in ("starting_after", "ending_before"):
            cursor = p.text(name)
            cursors[name] = None
            if cursor is not None:
                row = await self.objects.get(cursor)
                if row is None or row.type != type_:
                    raise no_such(type_.replace("_", " "), cursor, param=name)
                cursors[name] = row.seq
        created: dict[str, int] = {}
        if p.has("created"):
            raw = p.raw("created")
            if isinstance(raw, str):
                exact = p.required_integer("created")
                created = {"gte": exact, "lte": exact}
            else:
                for op in ("gt", "gte", "lt", "lte"):
                    bound = p.integer(f"created.{op}")
                    if bound is not None:
                        created[op] = bound
        equal = {name: text for name in filters if (text := p.text(name)) is not None}
        rows, has_more = await self.objects.page(
            type_,
            account=scope,
            filters=equal,
            created=created,
            limit=limit,
            starting_after=cursors["starting_after"],
            ending_before=cursors["ending_before"],
            any_account=any_account,
        )
        data = [await self.render(row.body, _strip_data(p.expand())) for row in rows]
        return {"object": "list", "data": data, "has_more": has_more, "url": url}

    async def _txn(
        self,
        *,
        amount: int,
        currency: str,
        type_: str,
        category: str,
        source: str | None,
        account: str | None = None,
        fee: int = 0,
        fee_description: str = "Stripe processing fees",
        description: str | None = None,
    ) -> dict[str, Any]:
        body = objects.balance_transaction(
            amount=amount,
            currency=currency,
            type=type_,
            reporting_category=category,
            source=source,
            fee=fee,
            fee_description=fee_description,
            description=description,
        )
        await self.objects.add("balance_transaction", body, account=account)
        return body

    async def available(self, account: str | None, currency: str) -> int:
        return sum(
            net
            for cur, status, net in await self.objects.balance(account)
            if cur == currency and status == "available"
        )

    # ---------------------------------------------------------------- customers

    async def create_customer(self, p: Params) -> dict[str, Any]:
        body = objects.customer(
            email=p.text("email"),
            name=p.text("name"),
            metadata=p.metadata(),
            description=p.text("description"),
        )
        await self.objects.add("customer", body, account=self.account)
        await self.emit("customer.created", body, account=self.account)
        return body

    async def _customer(self, p: Params, param: str = "customer") -> str | None:
        customer_id = p.text(param)
        if customer_id is not None:
            await self.load(customer_id, "customer", param=param)
        return customer_id

    # ---------------------------------------------------------------- checkout

    async def create_checkout_session(self, p: Params) -> dict[str, Any]:
        mode = p.required_text("mode")
        if mode != "payment":
            raise invalid(
                "The sandbox supports Checkout Sessions with mode=payment only.", param="mode"
            )
        items = p.raw("line_items")
        if not isinstance(items, list) or not items:
            raise missing_param("line_items")
        total, currency, line_items = 0, None, []
        for index in range(len(items)):
            item = p.child(f"line_items.{index}")
            if item.has("price"):
                raise no_such("price", item.required_text("price"), param=item._display("price"))
            quantity = item.required_integer("quantity", minimum=1)
            item_currency = item.currency("price_data.currency")
            unit_amount = item.required_integer("price_data.unit_amount", minimum=0)
            name = item.required_text("price_data.product_data.name")
            if currency is not None and item_currency != currency:
                raise invalid(
                    "All line items must be in the same currency.",
                    param=item._display("price_data.currency"),
                )
            currency = item_currency
            total += unit_amount * quantity
            line_items.append({"name": name, "quantity": quantity, "unit_amount": unit_amount})
        assert currency is not None  # noqa: S101 - at least one item
        created = objects.now()
        expires_at = p.integer("expires_at")
        if expires_at is None:
            expires_at = created + 86400
        elif not created + 1800 - 60 <= expires_at <= created + 86400 + 60:
            raise invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                "Checkout Session creation.",
                param="expires_at",
            )
        customer_id = await self._customer(p)
        intent_data = p.child("payment_intent_data") if p.has("payment_intent_data") else None
        private: dict[str, Any] = {"line_items": line_items, "payment_intent_data": {}}
        if intent_data is not None:
            private["payment_intent_data"] = {
                "metadata": intent_data.metadata(),
                "description": intent_data.text("description"),
                "receipt_email": intent_data.text("receipt_email"),
                "transfer_data": await self._transfer_data(intent_data, amount=total),
                "application_fee_amount": intent_data.integer("application_fee_amount", minimum=1),
                "transfer_group": intent_data.text("transfer_group"),
                "on_behalf_of": intent_data.text("on_behalf_of"),
                "capture_method": _capture_method(intent_data),
            }
        body = objects.checkout_session(
            url_base=self.base,
            amount_total=total,
            currency=currency,
            customer_id=customer_id,
            customer_email=p.text("customer_email"),
            client_reference_id=p.text("client_reference_id"),
            success_url=p.text("success_url"),
            cancel_url=p.text("cancel_url"),
            expires_at=expires_at,
            metadata=p.metadata(),
        )
        await self.objects.add("checkout.session", body, private=private)
        return body

    async def expire_checkout_session(self, session_id: str) -> dict[str, Any]:
        """The session can no longer be paid: ``checkout.session.expired``."""
        row = await self.load(session_id, "checkout.session", resource="checkout.session")
        body = row.body
        if body["status"] != "open":
            raise refused(
                'Only Checkout Sessions with a status in ["open"] can be expired.',
                code="checkout_session_not_open",
            )
        body["status"] = "expired"
        await self.objects.save(row, body)
        if body.get("payment_intent"):
            intent = await self.load(body["payment_intent"], "payment_intent")
            if intent.body["status"] not in ("succeeded", "canceled"):
                await self._cancel_intent(intent, "automatic")
        await self.emit("checkout.session.expired", body)
        return body

    async def attempt_checkout(self, session_id: str, card: Card) -> dict[str, Any]:
        """The customer pressed a button on the hosted checkout page."""
        row = await self.load(session_id, "checkout.session", resource="checkout.session")
        session = row.body
        if session["status"] != "open":
            raise PageError(f"This Checkout Session is {session['status']}.")
        intent = await self._session_intent(row)
        status = await self._confirm(intent, card)
        if status in ("succeeded", "requires_capture"):
            session = row.body
            customer_email = session.get("customer_email")
            if session.get("customer"):
                customer = await self.objects.get(session["customer"])
                customer_email = (customer.body.get("email") if customer else None) or (
                    customer_email
                )
            session.update(
                status="complete",
                # An authorization only (capture_method=manual): complete but not paid,
                # as Checkout reports it; the capture pays it later.
                payment_status="paid" if status == "succeeded" else "unpaid",
                customer_details={
                    "address": None,
                    "business_name": None,
                    "email": customer_email,
                    "individual_name": None,
                    "name": "Sandbox Customer",
                    "phone": None,
                    "tax_exempt": "none",
                    "tax_ids": [],
                },
            )
            await self.objects.save(row, session)
            await self.emit("checkout.session.completed", session)
        return row.body

    async def _session_intent(self, row: SandboxObject) -> SandboxObject:
        """The session's PaymentIntent, created at the first payment attempt (as
        Checkout does since API version 2022-08-01)."""
        session = row.body
        if session.get("payment_intent"):
            return await self.load(session["payment_intent"], "payment_intent")
        data = row.private.get("payment_intent_data") or {}
        body = objects.payment_intent(
            amount=int(session["amount_total"]),
            currency=str(session["currency"]),
            customer_id=session.get("customer"),
            metadata=dict(data.get("metadata") or {}),
            description=data.get("description"),
            payment_method=None,
            receipt_email=data.get("receipt_email"),
            automatic_payment_methods=False,
        )
        body["transfer_data"] = data.get("transfer_data")
        body["application_fee_amount"] = data.get("application_fee_amount")
        body["transfer_group"] = data.get("transfer_group")
        body["on_behalf_of"] = data.get("on_behalf_of")
        body["capture_method"] = data.get("capture_method") or "automatic"
        intent = await self.objects.add("payment_intent", body)
        session["payment_intent"] = body["id"]
        await self.objects.save(row, session)
        await self.emit("payment_intent.created", body)
        return intent

    # ---------------------------------------------------------------- payment intents

    async def _transfer_data(self, p: Params, *, amount: int) -> dict[str, Any] | None:
        """``transfer_data[destination]`` of a destination charge, checked as Stripe does."""
        destination = p.text("transfer_data.destination")
        if destination is None:
            return None
        row = await self.load(
            destination, "account", resource="destination", param="transfer_data[destination]"
        )
        self._can_receive_transfers(row, param="transfer_data[destination]")
        transfer_amount = p.integer("transfer_data.amount", minimum=1)
        if transfer_amount is not None and transfer_amount > amount:
            raise invalid(
                "transfer_data[amount] cannot exceed the amount.", param="transfer_data[amount]"
            )
        return {"amount": transfer_amount, "destination": destination}

    async def create_payment_intent(self, p: Params) -> dict[str, Any] | StripeApiError:
        amount = p.required_integer("amount", minimum=1)
        currency = p.currency()
        assert currency is not None  # noqa: S101 - required
        if amount < _minimum_charge(currency):
            raise invalid(
                f"Amount must be at least {_money(_minimum_charge(currency), currency)}",
                param="amount",
                code="amount_too_small",
            )
        customer_id = await self._customer(p)
        payment_method = p.text("payment_method")
        body = objects.payment_intent(
            amount=amount,
            currency=currency,
            customer_id=customer_id,
            metadata=p.metadata(),
            description=p.text("description"),
            payment_method=payment_method,
            receipt_email=p.text("receipt_email"),
            automatic_payment_methods=p.boolean("automatic_payment_methods.enabled"),
        )
        body["transfer_data"] = await self._transfer_data(p, amount=amount)
        body["application_fee_amount"] = p.integer("application_fee_amount", minimum=1)
        if (body["application_fee_amount"] or 0) > amount:
            raise invalid(
                "The application fee cannot exceed the amount.", param="application_fee_amount"
            )
        body["transfer_group"] = p.text("transfer_group")
        body["on_behalf_of"] = p.text("on_behalf_of")
        body["capture_method"] = _capture_method(p)
        row = await self.objects.add("payment_intent", body)
        await self.emit("payment_intent.created", body)
        if p.boolean("confirm"):
            return await self._confirm_api(row, payment_method, off_session=_off_session(p))
        return row.body

    async def confirm_payment_intent(
        self, intent_id: str, p: Params
    ) -> dict[str, Any] | StripeApiError:
        row = await self.load(intent_id, "payment_intent")
        return await self._confirm_api(row, p.text("payment_method"), off_session=_off_session(p))

    async def _card_behaviour(
        self, row: SandboxObject, payment_method: str, *, off_session: bool
    ) -> Card | None:
        """What a saved (sandbox) PaymentMethod does when charged: its test card's."""
        saved = await self.objects.get(payment_method)
        if saved is None or saved.type != "payment_method":
            return None
        owner = saved.body.get("customer")
        if row.body.get("customer") and owner != row.body.get("customer"):
            raise refused(
                f"The provided PaymentMethod {payment_method} was previously used with a "
                "PaymentIntent without Customer attachment, shared with a connected account "
                "without Customer attachment, or was detached from a Customer.",
                code="payment_method_unexpected_state",
                param="payment_method",
            )
        test = card_of_fingerprint((saved.body.get("card") or {}).get("fingerprint"))
        if test is None:
            return "success"
        return outcome(test, off_session=off_session)

    async def _confirm_api(
        self, row: SandboxObject, payment_method: str | None, *, off_session: bool = False
    ) -> dict[str, Any] | StripeApiError:
        """Confirm with a test PaymentMethod; a decline is answered with Stripe's 402
        card error after the failure is recorded (and its events emitted)."""
        payment_method = payment_method or row.body.get("payment_method")
        if not payment_method:
            raise refused(
                "You cannot confirm this PaymentIntent because it's missing a payment "
                "method. To confirm the PaymentIntent with "
                f"{row.body['id']}, specify a payment method attached to this customer "
                "along with the customer ID.",
                code="payment_intent_unexpected_state",
            )
        if row.body["status"] not in CONFIRMABLE:
            raise refused(
                "You cannot confirm this PaymentIntent because it has a status of "
                f"{row.body['status']}.",
                code="payment_intent_unexpected_state",
            )
        card = TEST_PAYMENT_METHODS.get(payment_method)
        if card is None:
            card = await self._card_behaviour(row, payment_method, off_session=off_session)
        if card is None and not payment_method.startswith(("pm_", "card_")):
            raise no_such("PaymentMethod", payment_method, param="payment_method")
        if off_session and card == "3ds_required":
            # Nobody is there to authenticate: Stripe declines instead.
            card = "authentication_required"
        body = row.body
        body["payment_method"] = payment_method
        await self.objects.save(row, body)
        status = await self._confirm(row, card or "success")
        if status == "requires_payment_method":
            error = row.body["last_payment_error"]
            return StripeApiError(
                402,
                error["message"],
                type="card_error",
                code=error["code"],
                decline_code=error.get("decline_code"),
                param=None,
                extra={"payment_intent": copy.deepcopy(row.body)},
            )
        if payment_method == "pm_card_createDispute" and status == "succeeded":
            await self.open_dispute(str(row.body["latest_charge"]), None, "fraudulent")
        return row.body

    async def cancel_payment_intent(self, intent_id: str, p: Params) -> dict[str, Any]:
        row = await self.load(intent_id, "payment_intent")
        if row.body["status"] not in (*CONFIRMABLE, "requires_action", "requires_capture"):
            raise refused(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{row.body['status']}. Only a PaymentIntent with one of the following "
                "statuses may be canceled: requires_payment_method, requires_capture, "
                "requires_confirmation, requires_action, processing.",
                code="payment_intent_unexpected_state",
            )
        reason = p.text("cancellation_reason") or "requested_by_customer"
        await self._cancel_intent(row, reason)
        return row.body

    async def _cancel_intent(self, row: SandboxObject, reason: str) -> None:
        body = row.body
        body.update(
            status="canceled",
            cancellation_reason=reason,
            canceled_at=objects.now(),
            next_action=None,
        )
        await self.objects.save(row, body)
        await self.emit("payment_intent.canceled", body)

    async def attempt_payment_intent(self, intent_id: str, card: Card) -> dict[str, Any]:
        """The customer pressed a button on the sandbox's PaymentIntent page."""
        row = await self.load(intent_id, "payment_intent")
        await self._confirm(row, card)
        return row.body

    async def _confirm(self, row: SandboxObject, card: Card) -> str:
        """Run one payment attempt; returns the PaymentIntent's new status."""
        status = row.body["status"]
        if card in ("3ds_pass", "3ds_fail"):
            if status != "requires_action":
                raise PageError("This payment does not wait for authentication.")
        elif status not in (*CONFIRMABLE, "requires_action"):
            # requires_action included: the customer left the challenge and tries again.
            raise PageError(f"This payment cannot be confirmed: it is {status}.")
        if card == "3ds_required":
            body = row.body
            body.update(
                status="requires_action",
                payment_method=body.get("payment_method") or "pm_card_threeDSecure2Required",
                next_action={
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "return_url": None,
                        "url": f"{self.base}/sandbox/payment_intents/{body['id']}/authenticate",
                    },
                },
            )
            await self.objects.save(row, body)
            await self.emit("payment_intent.requires_action", body)
            return "requires_action"
        if card in ("success", "3ds_pass"):
            await self._succeed(row, three_d_secure=card == "3ds_pass")
            return str(row.body["status"])
        if card == "3ds_fail":
            await self._fail(
                row,
                code="payment_intent_authentication_failure",
                decline_code=None,
                message="We are unable to authenticate your payment method. Please choose "
                "a different payment method and try again.",
            )
        elif card == "authentication_required":
            await self._fail(
                row,
                code="authentication_required",
                decline_code="authentication_required",
                message="Your card was declined. This transaction requires authentication.",
            )
        elif card == "expired_card":
            await self._fail(
                row,
                code="expired_card",
                decline_code="expired_card",
                message="Your card has expired.",
            )
        elif card == "insufficient_funds":
            await self._fail(
                row,
                code="card_declined",
                decline_code="insufficient_funds",
                message="Your card has insufficient funds.",
            )
        else:
            await self._fail(
                row,
                code="card_declined",
                decline_code="generic_decline",
                message="Your card was declined.",
            )
        return "requires_payment_method"

    async def _authorize(self, row: SandboxObject, *, three_d_secure: bool) -> None:
        """``capture_method=manual``: the card holds the amount, nothing is charged (no
        balance transaction) until the capture."""
        intent = row.body
        intent["payment_method"] = intent.get("payment_method") or objects.new_id("pm")
        charge = objects.charge(
            intent=intent,
            succeeded=True,
            balance_transaction_id=None,
            three_d_secure=three_d_secure,
        )
        charge.update(captured=False, amount_captured=0)
        charge_row = await self.objects.add("charge", charge)
        intent.update(
            status="requires_capture",
            amount_capturable=int(intent["amount"]),
            latest_charge=charge["id"],
            last_payment_error=None,
            next_action=None,
            payment_method_types=["card"],
        )
        await self.objects.save(row, intent)
        await self.emit("charge.succeeded", charge_row.body)
        await self.emit("payment_intent.amount_capturable_updated", intent)

    async def capture_payment_intent(self, intent_id: str, p: Params) -> dict[str, Any]:
        """Capture an authorization, all or ``amount_to_capture`` of it; the rest is
        released (the charge shows it refunded, as Stripe's does)."""
        row = await self.load(intent_id, "payment_intent")
        intent = row.body
        if intent["status"] != "requires_capture":
            raise refused(
                "This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following "
                "statuses may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
            )
        capturable = int(intent["amount_capturable"])
        amount = p.integer("amount_to_capture", minimum=1) or capturable
        currency = str(intent["currency"])
        if amount > capturable:
            raise invalid(
                "The amount_to_capture must be less than or equal to the amount_capturable "
                f"({_money(capturable, currency)}).",
                param="amount_to_capture",
                code="amount_too_large",
            )
        charge_row = await self.load(str(intent["latest_charge"]), "charge")
        txn = await self._txn(
            amount=amount,
            currency=currency,
            type_="charge",
            category="charge",
            source=charge_row.body["id"],
            fee=objects.card_fee(amount, currency),
            description=intent.get("description"),
        )
        charge = charge_row.body
        charge.update(
            captured=True,
            amount_captured=amount,
            amount_refunded=int(charge["amount"]) - amount,
            balance_transaction=txn["id"],
        )
        await self.objects.save(charge_row, charge)
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        await self.objects.save(row, intent)
        await self.emit("charge.captured", charge)
        await self.emit("payment_intent.succeeded", intent)
        return intent

    async def expire_authorization(self, intent_id: str) -> dict[str, Any]:
        """Stripe's capture window passed (7 days for cards): the authorization is
        cancelled by Stripe itself, ``cancellation_reason=automatic``."""
        row = await self.load(intent_id, "payment_intent")
        if row.body["status"] != "requires_capture":
            raise refused(
                f"Only an authorized PaymentIntent (requires_capture) can expire; this one is "
                f"{row.body['status']}.",
                code="payment_intent_unexpected_state",
            )
        await self._cancel_intent(row, "automatic")
        return row.body

    async def _succeed(self, row: SandboxObject, *, three_d_secure: bool) -> None:
        intent = row.body
        if intent.get("capture_method") == "manual":
            await self._authorize(row, three_d_secure=three_d_secure)
            return
        intent["payment_method"] = intent.get("payment_method") or objects.new_id("pm")
        amount, currency = int(intent["amount"]), str(intent["currency"])
        txn = await self._txn(
            amount=amount,
            currency=currency,
            type_="charge",
            category="charge",
            source=None,
            fee=objects.card_fee(amount, currency),
            description=intent.get("description"),
        )
        charge = objects.charge(
            intent=intent,
            succeeded=True,
            balance_transaction_id=txn["id"],
            three_d_secure=three_d_secure,
        )
        charge["application_fee_amount"] = intent.get("application_fee_amount")
        await self._set_source(txn, charge["id"])
        charge_row = await self.objects.add("charge", charge)
        intent.update(
            status="succeeded",
            amount_received=amount,
            latest_charge=charge["id"],
            last_payment_error=None,
            next_action=None,
            payment_method_types=["card"],
        )
        await self.objects.save(row, intent)
        transfer_data = intent.get("transfer_data")
        if transfer_data:
            # A destination charge: Stripe moves the payee's part to the connected account.
            transfer_amount = transfer_data.get("amount") or amount - int(
                intent.get("application_fee_amount") or 0
            )
            transfer = await self._transfer(
                amount=transfer_amount,
                currency=currency,
                destination=str(transfer_data["destination"]),
                description=None,
                metadata={},
                transfer_group=intent.get("transfer_group"),
                source_transaction=charge["id"],
            )
            charge = charge_row.body
            charge["transfer"] = transfer["id"]
            charge["transfer_data"] = transfer_data
            await self.objects.save(charge_row, charge)
        await self.emit("charge.succeeded", charge_row.body)
        await self.emit("payment_intent.succeeded", intent)
        # The PaymentIntent of a subscription's invoice pays that invoice.
        await SandboxBilling(self).intent_succeeded(intent)

    async def _fail(
        self, row: SandboxObject, *, code: str, decline_code: str | None, message: str
    ) -> None:
        intent = row.body
        intent["payment_method"] = intent.get("payment_method") or objects.new_id("pm")
        charge = objects.charge(
            intent=intent,
            succeeded=False,
            balance_transaction_id=None,
            three_d_secure=False,
            failure_code=code,
            failure_message=message,
        )
        await self.objects.add("charge", charge)
        error: dict[str, Any] = {
            "type": "card_error",
            "code": code,
            "message": message,
            "charge": charge["id"],
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            "payment_method": {"id": intent["payment_method"], "object": "payment_method"},
        }
        if decline_code is not None:
            error["decline_code"] = decline_code
        intent.update(
            status="requires_payment_method",
            last_payment_error=error,
            latest_charge=charge["id"],
            next_action=None,
        )
        await self.objects.save(row, intent)
        await self.emit("charge.failed", charge)
        await self.emit("payment_intent.payment_failed", intent)

    # ---------------------------------------------------------------- refunds

    async def create_refund(self, p: Params) -> dict[str, Any]:
        charge_id = p.text("charge")
        intent_id = p.text("payment_intent")
        if charge_id is None and intent_id is None:
            raise invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        if charge_id is None:
            assert intent_id is not None  # noqa: S101 - checked above
            intent = await self.load(intent_id, "payment_intent", param="payment_intent")
            if intent.body["status"] != "succeeded" or not intent.body.get("latest_charge"):
                raise refused(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                    "refund.",
                    code="charge_not_refundable",
                    param="payment_intent",
                )
            charge_id = str(intent.body["latest_charge"])
        row = await self.load(charge_id, "charge", param="charge")
        charge = row.body
        if charge["status"] != "succeeded":
            raise refused(f"Charge {charge_id} cannot be refunded.", code="charge_not_refundable")
        if charge.get("disputed"):
            raise refused(
                f"Charge {charge_id} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )
        remaining = int(charge["amount"]) - int(charge["amount_refunded"])
        if remaining <= 0:
            raise refused(
                f"Charge {charge_id} has already been refunded.", code="charge_already_refunded"
            )
        amount = p.integer("amount", minimum=1) or remaining
        currency = str(charge["currency"])
        if amount > remaining:
            raise refused(
                f"Refund amount ({_money(amount, currency)}) is greater than unrefunded "
                f"amount on charge ({_money(remaining, currency)})",
                code="amount_too_large",
                param="amount",
            )
        reason = p.text("reason")
        if reason is not None and reason not in (
            "duplicate",
            "fraudulent",
            "requested_by_customer",
        ):
            raise invalid(f"Invalid reason: {reason}", param="reason")
        txn = await self._txn(
            amount=-amount, currency=currency, type_="refund", category="refund", source=None
        )
        refund = objects.refund(
            charge_body=charge,
            amount=amount,
            reason=reason,
            metadata=p.metadata(),
            balance_transaction_id=txn["id"],
        )
        await self._set_source(txn, refund["id"])
        reversal: dict[str, Any] | None = None
        if p.boolean("reverse_transfer") and charge.get("transfer"):
            # A destination charge: the transfer (the payee's part) is reversed in
            # proportion, by the same cumulative largest remainder the ledger uses;
            # ``refund_application_fee`` needs nothing more here, as the sandbox's transfer
            # is already net of the application fee.
            fee = int(charge.get("application_fee_amount") or 0)
            share = amount - proportional_part(
                amount, int(charge["amount"]), fee, int(charge["amount_refunded"])
            )
            if share:
                reversal = await self._reverse(
                    str(charge["transfer"]), share, metadata={}, source_refund=refund["id"]
                )
                refund["transfer_reversal"] = reversal["id"]
        await self.objects.add("refund", refund)
        charge["amount_refunded"] = int(charge["amount_refunded"]) + amount
        charge["refunded"] = charge["amount_refunded"] >= int(charge["amount"])
        charge["refunds"]["data"] = [refund, *charge["refunds"]["data"]]
        await self.objects.save(row, charge)
        await self.emit("refund.created", refund)
        await self.emit("charge.refunded", charge)
        return refund

    async def fail_refund(self, refund_id: str) -> dict[str, Any]:
        """The card issuer sent a refund back (expired or closed card): the money
        returns to the platform balance; ``refund.failed`` and ``refund.updated``."""
        row = await self.load(refund_id, "refund")
        refund = row.body
        if refund["status"] != "succeeded":
            raise PageError(f"Only a succeeded refund can fail (this one is {refund['status']}).")
        amount, currency = int(refund["amount"]), str(refund["currency"])
        txn = await self._txn(
            amount=amount,
            currency=currency,
            type_="refund_failure",
            category="refund_failure",
            source=refund_id,
        )
        previous = {"status": "succeeded", "failure_reason": None}
        refund.update(
            status="failed",
            failure_reason="expired_or_canceled_card",
            failure_balance_transaction=txn["id"],
        )
        await self.objects.save(row, refund)
        charge_row = await self.load(str(refund["charge"]), "charge")
        charge = charge_row.body
        charge["amount_refunded"] = max(int(charge["amount_refunded"]) - amount, 0)
        charge["refunded"] = False
        charge["refunds"]["data"] = [
            refund if r.get("id") == refund_id else r for r in charge["refunds"]["data"]
        ]
        await self.objects.save(charge_row, charge)
        await self.emit("refund.updated", refund, previous=previous)
        await self.emit("refund.failed", refund, previous=previous)
        await self.emit("charge.refund.updated", refund, previous=previous)
        return refund

    async def _set_source(self, txn: dict[str, Any], source: str) -> None:
        row = await self.objects.get(txn["id"])
        assert row is not None  # noqa: S101 - just written
        txn["source"] = source
        await self.objects.save(row, txn)

    # ---------------------------------------------------------------- disputes

    async def open_dispute(self, charge_id: str, amount: int | None, reason: str) -> dict[str, Any]:
        """The cardholder's bank disputes a charge: the amount and Stripe's dispute
        fee leave the platform balance; ``charge.dispute.created`` (+ funds_withdrawn)."""
        row = await self.load(charge_id, "charge", account=None)
        charge = row.body
        if charge["status"] != "succeeded":
            raise PageError("Only a succeeded charge can be disputed.")
        if charge.get("disputed"):
            raise PageError("This charge is already disputed.")
        # The card network disputes what is still on the card: the unrefunded part.
        remaining = int(charge["amount"]) - int(charge.get("amount_refunded") or 0)
        amount = amount or remaining
        if not 0 < amount <= remaining:
            raise PageError(
                "The disputed amount must be between 1 and the unrefunded amount "
                f"({_money(remaining, str(charge['currency']))})."
            )
        currency = str(charge["currency"])
        txn = await self._txn(
            amount=-amount,
            currency=currency,
            type_="adjustment",
            category="dispute",
            source=None,
            fee=objects.dispute_fee(currency),
            fee_description="Dispute fee",
            description=f"Chargeback withdrawal for {charge_id}",
        )
        dispute = objects.dispute(
            charge_body=charge, amount=amount, reason=reason, transactions=[txn]
        )
        await self._set_source(txn, dispute["id"])
        dispute["balance_transactions"] = [txn]
        await self.objects.add("dispute", dispute)
        charge["disputed"] = True
        await self.objects.save(row, charge)
        await self.emit("charge.dispute.created", dispute)
        await self.emit("charge.dispute.funds_withdrawn", dispute)
        return dispute

    async def close_dispute(
        self, dispute_id: str, outcome: Literal["won", "lost"]
    ) -> dict[str, Any]:
        """The bank decided. Won: the amount comes back (``funds_reinstated``); lost:
        it is gone for good. Either way ``charge.dispute.closed``."""
        row = await self.load(dispute_id, "dispute", account=None)
        dispute = row.body
        if dispute["status"] not in OPEN_DISPUTE_STATUSES:
            raise refused(
                f"This dispute is already closed ({dispute['status']}).",
                code=None,
            )
        previous = {"status": dispute["status"]}
        dispute["status"] = outcome
        dispute["is_charge_refundable"] = False
        if outcome == "won":
            txn = await self._txn(
                amount=int(dispute["amount"]),
                currency=str(dispute["currency"]),
                type_="adjustment",
                category="dispute_reversal",
                source=dispute_id,
                description=f"Chargeback reversal for {dispute['charge']}",
            )
            dispute["balance_transactions"] = [*dispute["balance_transactions"], txn]
        await self.objects.save(row, dispute)
        if outcome == "won":
            await self.emit("charge.dispute.funds_reinstated", dispute, previous=previous)
        await self.emit("charge.dispute.closed", dispute, previous=previous)
        return dispute

    async def update_dispute(self, dispute_id: str, p: Params) -> dict[str, Any]:
        """Evidence, as Stripe's test mode reads it: ``winning_evidence`` or
        ``losing_evidence`` in ``evidence[uncategorized_text]`` decides the outcome
        when submitted (``submit`` defaults to true)."""
        row = await self.load(dispute_id, "dispute", account=None)
        dispute = row.body
        if dispute["status"] not in OPEN_DISPUTE_STATUSES:
            raise refused("This dispute is already closed.", code=None)
        text = p.text("evidence.uncategorized_text")
        if text is not None:
            dispute["evidence"]["uncategorized_text"] = text
        dispute["metadata"] = {**dispute.get("metadata", {}), **p.metadata()}
        submit = p.boolean("submit", default=True)
        if submit:
            dispute["evidence_details"]["submission_count"] += 1
            dispute["evidence_details"]["has_evidence"] = True
        await self.objects.save(row, dispute)
        if submit:
            if text == "winning_evidence":
                return await self.close_dispute(dispute_id, "won")
            if text == "losing_evidence":
                return await self.close_dispute(dispute_id, "lost")
            previous = {"status": dispute["status"]}
            dispute["status"] = "under_review"
            await self.objects.save(row, dispute)
            await self.emit("charge.dispute.updated", dispute, previous=previous)
        return dispute

    # ---------------------------------------------------------------- accounts

    async def create_account(self, p: Params) -> dict[str, Any]:
        account_type = p.text("type") or (
            "express" if p.text("controller.stripe_dashboard.type") == "express" else None
        )
        if account_type is None:
            raise missing_param("type")
        if account_type not in ("express", "custom", "standard"):
            raise invalid(f"Invalid type: {account_type}", param="type")
        capabilities = p.raw("capabilities")
        requested = (
            sorted(
                name
                for name, value in capabilities.items()
                if isinstance(value, dict) and value.get("requested") == "true"
            )
            if isinstance(capabilities, dict)
            else []
        )
        body = objects.express_account(
            country=p.text("country"),
            email=p.text("email"),
            capabilities=requested,
            metadata=p.metadata(),
            business_type=p.text("business_type"),
        )
        body["type"] = account_type
        await self.objects.add("account", body, private={"links": {}})
        return body

    async def create_account_link(self, p: Params) -> dict[str, Any]:
        account_id = p.required_text("account")
        row = await self.load(account_id, "account", param="account")
        link_type = p.required_text("type")
        if link_type not in ("account_onboarding", "account_update"):
            raise invalid(f"Invalid type: {link_type}", param="type")
        if link_type == "account_update" and row.body["type"] == "express":
            raise invalid(
                "You cannot create `account_update` type Account Links for Express accounts.",
                param="type",
            )
        refresh_url = p.required_text("refresh_url")
        return_url = p.required_text("return_url")
        token = objects.random_tail(24)
        created = objects.now()
        private = copy.deepcopy(row.private)
        private.setdefault("links", {})[token] = {
            "refresh_url": refresh_url,
            "return_url": return_url,
            "expires_at": created + ACCOUNT_LINK_TTL_SECONDS,
            "used": False,
        }
        await self.objects.save(row, row.body, private)
        body = objects.template("account_link")
        body.update(
            created=created,
            expires_at=created + ACCOUNT_LINK_TTL_SECONDS,
            url=f"{self.base}/sandbox/onboarding/{account_id}?link={token}",
        )
        return body

    async def create_login_link(self, account_id: str) -> dict[str, Any]:
        row = await self.load(account_id, "account")
        if row.body["type"] != "express":
            raise invalid("Login links can only be created for Express accounts.", param="account")
        if not row.body.get("details_submitted"):
            raise refused(
                "Cannot create a login link for an account that has not completed onboarding.",
                code="account_invalid",
            )
        body = objects.template("login_link")
        body.update(
            created=objects.now(),
            url=f"{self.base}/sandbox/dashboard/{account_id}?login={objects.random_tail(12)}",
        )
        return body

    def onboarding_link(self, row: SandboxObject, token: str | None) -> dict[str, Any] | None:
        """The link's redirect URLs if it can still be used (unused, not expired)."""
        link = (row.private.get("links") or {}).get(token or "")
        if not isinstance(link, dict) or link.get("used"):
            return None
        if int(link.get("expires_at", 0)) < objects.now():
            return None
        return link

    def link_urls(self, row: SandboxObject, token: str | None) -> dict[str, Any] | None:
        """The link's redirect URLs, whether or not it can still be used."""
        link = (row.private.get("links") or {}).get(token or "")
        return link if isinstance(link, dict) else None

    async def finish_onboarding(
        self, account_id: str, token: str | None, outcome: Literal["enabled", "restricted", "later"]
    ) -> str:
        """The payee submitted the onboarding form; returns where to send the browser
        (the link's return_url). ``account.updated`` goes to the Connect endpoint."""
        row = await self.load(account_id, "account")
        link = self.onboarding_link(row, token)
        if link is None:
            raise PageError("This onboarding link has expired or was already used.")
        private = copy.deepcopy(row.private)
        private["links"][token]["used"] = True
        if outcome == "later":
            await self.objects.save(row, row.body, private)
            return str(link["return_url"])
        before = row.body
        after = objects.onboarded(before, outcome)
        await self.objects.save(row, after, private)
        await self.emit(
            "account.updated",
            after,
            account=account_id,
            previous={
                key: before.get(key)
                for key in (
                    "charges_enabled",
                    "payouts_enabled",
                    "details_submitted",
                    "capabilities",
                    "requirements",
                )
                if before.get(key) != after.get(key)
            },
        )
        return str(link["return_url"])

    # ---------------------------------------------------------------- transfers

    def _can_receive_transfers(self, account: SandboxObject, *, param: str) -> None:
        capabilities = account.body.get("capabilities") or {}
        if capabilities.get("transfers") != "active":
            raise refused(
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
                param=param,
            )

    async def create_transfer(self, p: Params) -> dict[str, Any]:
        amount = p.required_integer("amount", minimum=1)
        currency = p.currency()
        assert currency is not None  # noqa: S101 - required
        destination = p.required_text("destination")
        source_transaction = p.text("source_transaction")
        if source_transaction is not None:
            await self.load(source_transaction, "charge", param="source_transaction")
        return await self._transfer(
            amount=amount,
            currency=currency,
            destination=destination,
            description=p.text("description"),
            metadata=p.metadata(),
            transfer_group=p.text("transfer_group"),
            source_transaction=source_transaction,
        )

    async def _transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        description: str | None,
        metadata: dict[str, str],
        transfer_group: str | None,
        source_transaction: str | None,
    ) -> dict[str, Any]:
        """Platform balance -> connected account, refused as Stripe refuses: unknown
        destination, no ``transfers`` capability, not enough available balance."""
        account = await self.load(
            destination, "account", resource="destination", param="destination"
        )
        self._can_receive_transfers(account, param="destination")
        if source_transaction is None and await self.available(None, currency) < amount:
            raise refused(
                "You have insufficient available funds in your Stripe account. Try adding "
                "funds directly to your available balance by creating Charges using the "
                "4000000000000077 test card.",
                code="balance_insufficient",
            )
        txn = await self._txn(
            amount=-amount, currency=currency, type_="transfer", category="transfer", source=None
        )
        payment_id = objects.new_id("py")
        body = objects.transfer(
            amount=amount,
            currency=currency,
            destination=destination,
            destination_payment=payment_id,
            balance_transaction_id=txn["id"],
            description=description,
            metadata=metadata,
            transfer_group=transfer_group,
            source_transaction=source_transaction,
        )
        await self._set_source(txn, body["id"])
        await self.objects.add("transfer", body)
        await self._txn(
            amount=amount,
            currency=currency,
            type_="payment",
            category="charge",
            source=payment_id,
            account=destination,
        )
        await self.emit("transfer.created", body)
        await self._automatic_payout(account, amount, currency)
        return body

    async def _automatic_payout(self, account: SandboxObject, amount: int, currency: str) -> None:
        """Express accounts are paid out automatically: the sandbox pays each transfer
        out at once (``payout.created`` on Connect), to be paid or failed by hand."""
        await self._payout(
            account.body["id"],
            amount=amount,
            currency=currency,
            destination=objects.external_account_id(account.body),
            automatic=True,
            description=None,
            metadata={},
        )

    async def reverse_transfer(self, transfer_id: str, p: Params) -> dict[str, Any]:
        """``POST /v1/transfers/{id}/reversals``: money back from the connected account
        to the platform; ``transfer.reversed`` (also for partial reversals)."""
        return await self._reverse(
            transfer_id, p.integer("amount", minimum=1), metadata=p.metadata()
        )

    async def _reverse(
        self,
        transfer_id: str,
        requested: int | None,
        *,
        metadata: dict[str, str],
        source_refund: str | None = None,
    ) -> dict[str, Any]:
        """Reverse (part of) a transfer. The connected account may go negative: Stripe
        reverses a destination charge's transfer up to the charge whatever the payee
        holds (the platform answers for an Express account's negative balance)."""
        row = await self.load(transfer_id, "transfer", account=None)
        transfer = row.body
        remaining = int(transfer["amount"]) - int(transfer["amount_reversed"])
        amount = requested or remaining
        currency = str(transfer["currency"])
        if remaining <= 0:
            raise refused(
                f"Transfer {transfer_id} has already been fully reversed.",
                code=None,
            )
        if amount > remaining:
            raise refused(
                f"Reversal amount ({_money(amount, currency)}) is greater than the amount "
                f"that can be reversed ({_money(remaining, currency)}).",
                code="amount_too_large",
                param="amount",
            )
        txn = await self._txn(
            amount=amount,
            currency=currency,
            type_="transfer_refund",
            category="transfer_reversal",
            source=None,
        )
        reversal = objects.transfer_reversal(
            transfer_id=transfer_id,
            amount=amount,
            currency=currency,
            metadata=metadata,
            txn=txn["id"],
        )
        reversal["source_refund"] = source_refund
        await self._set_source(txn, reversal["id"])
        await self.objects.add("transfer_reversal", reversal)
        await self._txn(
            amount=-amount,
            currency=currency,
            type_="payment_refund",
            category="refund",
            source=transfer.get("destination_payment"),
            account=str(transfer["destination"]),
        )
        previous = {
            "amount_reversed": transfer["amount_reversed"],
            "reversed": transfer["reversed"],
        }
        transfer["amount_reversed"] = int(transfer["amount_reversed"]) + amount
        transfer["reversed"] = transfer["amount_reversed"] >= int(transfer["amount"])
        transfer["reversals"]["data"] = [reversal, *transfer["reversals"]["data"]]
        await self.objects.save(row, transfer)
        await self.emit("transfer.reversed", transfer, previous=previous)
        return reversal

    # ---------------------------------------------------------------- payouts

    async def create_payout(self, p: Params) -> dict[str, Any]:
        """A manual payout of a connected account (``Stripe-Account`` header)."""
        if self.account is None:
            raise invalid(
                "The sandbox pays out connected accounts only: send the Stripe-Account header."
            )
        amount = p.required_integer("amount", minimum=1)
        currency = p.currency()
        assert currency is not None  # noqa: S101 - required
        account = await self.load(self.account, "account")
        if not account.body.get("payouts_enabled"):
            raise refused("Payouts are not enabled for this account.", code="payouts_not_allowed")
        if await self.available(self.account, currency) < amount:
            raise refused(
                "You have insufficient funds in your Stripe account for this transfer. Your "
                "card balance is too low.",
                code="balance_insufficient",
            )
        return await self._payout(
            self.account,
            amount=amount,
            currency=currency,
            destination=objects.external_account_id(account.body),
            automatic=False,
            description=p.text("description"),
            metadata=p.metadata(),
        )

    async def _payout(
        self,
        account_id: str,
        *,
        amount: int,
        currency: str,
        destination: str | None,
        automatic: bool,
        description: str | None,
        metadata: dict[str, str],
    ) -> dict[str, Any]:
        txn = await self._txn(
            amount=-amount,
            currency=currency,
            type_="payout",
            category="payout",
            source=None,
            account=account_id,
        )
        body = objects.payout(
            amount=amount,
            currency=currency,
            destination=destination,
            balance_transaction_id=txn["id"],
            automatic=automatic,
            description=description,
            metadata=metadata,
        )
        await self._set_source(txn, body["id"])
        await self.objects.add("payout", body, account=account_id)
        await self.emit("payout.created", body, account=account_id)
        return body

    async def settle_payout(
        self, payout_id: str, outcome: Literal["paid", "failed"]
    ) -> dict[str, Any]:
        """The bank answered: ``payout.paid``, or ``payout.failed`` with the money back
        on the connected account's balance. Connect events (``account`` set)."""
        row = await self.objects.get(payout_id, for_update=True)
        if row is None or row.type != "payout" or row.account is None:
            raise PageError(f"No such payout: {payout_id}")
        payout = row.body
        if payout["status"] not in ("pending", "in_transit"):
            raise PageError(f"This payout is already {payout['status']}.")
        previous = {"status": payout["status"]}
        if outcome == "paid":
            payout.update(status="paid", reconciliation_status="completed")
            payout["trace_id"] = {"status": "supported", "value": objects.random_tail(12)}
        else:
            txn = await self._txn(
                amount=int(payout["amount"]),
                currency=str(payout["currency"]),
                type_="payout_failure",
                category="payout_reversal",
                source=payout_id,
                account=row.account,
            )
            payout.update(
                status="failed",
                failure_code="account_closed",
                failure_message="The bank account has been closed.",
                failure_balance_transaction=txn["id"],
            )
        await self.objects.save(row, payout)
        await self.emit("payout.updated", payout, account=row.account, previous=previous)
        await self.emit(f"payout.{outcome}", payout, account=row.account, previous=previous)
        return payout

    # ---------------------------------------------------------------- balance

    async def balance(self) -> dict[str, Any]:
        """Available and pending per currency of the platform or, with the
        ``Stripe-Account`` header, of that connected account (charges settle at once
        in the sandbox, so pending stays zero)."""
        sums: dict[str, dict[str, int]] = {}
        for currency, status, net in await self.objects.balance(self.account):
            sums.setdefault(currency, {"available": 0, "pending": 0})[
                "available" if status == "available" else "pending"
            ] += net
        if not sums:
            default = "usd"
            if self.account is not None:
                account = await self.objects.get(self.account)
                default = str((account.body if account else {}).get("default_currency") or "usd")
            sums[default] = {"available": 0, "pending": 0}
        body = objects.template("balance")
        body["available"] = [
            {"amount": s["available"], "currency": c, "source_types": {"card": s["available"]}}
            for c, s in sorted(sums.items())
        ]
        body["pending"] = [
            {"amount": s["pending"], "currency": c, "source_types": {"card": s["pending"]}}
            for c, s in sorted(sums.items())
        ]
        body["connect_reserved"] = [{"amount": 0, "currency": c} for c in sorted(sums)]
        return body

    # ---------------------------------------------------------------- housekeeping

    async def expire_due_sessions(self, limit: int = 100) -> int:
        """Open Checkout Sessions past ``expires_at`` expire, as Stripe expires them."""
        due = await self.objects.expired_sessions(objects.now(), limit)
        for session_id in due:
            await self.expire_checkout_session(session_id)
        return len(due)


def _capture_method(p: Params) -> str:
    method = p.text("capture_method") or "automatic"
    if method not in ("automatic", "automatic_async", "manual"):
        raise invalid(
            "Invalid capture_method: must be one of automatic, automatic_async, or manual",
            param=p._display("capture_method"),
        )
    return method


def _off_session(p: Params) -> bool:
    """``off_session``: ``true`` or Stripe's older ``one_off`` / ``recurring``."""
    return p.text("off_session") in ("true", "one_off", "recurring")


def _strip_data(paths: list[str]) -> list[str]:
    """``expand[]=data.x`` on a list applies ``x`` to each item."""
    return [path[5:] for path in paths if path.startswith("data.")]
