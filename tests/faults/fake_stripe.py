"""A small, stateful Stripe for tests that drive the whole app.

It answers the endpoints the gateway calls with Stripe's own object shapes
(tests/fixtures/stripe), keeps what it created, honours ``Idempotency-Key`` the way
Stripe does (the same key and parameters replay the first response; other parameters
are a 400 ``idempotency_error``), records every request, and injects faults on demand:
timeouts, connection errors, 500, 429, and 400 with Stripe's error shape, before or
after the request took effect (a lost response).

One instance serves respx (``FakeStripe.mount(router)``) for in-process tests, and is an
ASGI app (``fake(scope, receive, send)``) for app processes pointed at it with
``PAYMENTS_STRIPE_API_BASE``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import respx

from tests.faults.fault_injector import (
    FAULT_RESPONSES,
    Fault,
    FaultKind,
    Recorded,
    parse_form,
    stripe_error,
)
from tests.helpers import stripe_object

STRIPE_HOST = "api.stripe.com"


@dataclass
class Created:
    resource: str
    id: str
    idempotency_key: str | None


@dataclass
class FakeStripe:
    accounts_enabled: bool = False
    """New Express accounts come back onboarded (for dashboard links, transfers)."""
    fee_basis_points: int = 290
    requests: list[Recorded] = field(default_factory=list)
    created: list[Created] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    _idempotent: dict[str, tuple[str, httpx.Response]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    # -- test controls -----------------------------------------------------------------
    def fail(self, method: str, path: str, kind: FaultKind, *, after_effect: bool = False) -> None:
        """The next matching request fails once with ``kind``."""
        self.faults.append(Fault(method.upper(), re.compile(path), kind, after_effect))

    def calls(self, method: str, path: str) -> list[Recorded]:
        pattern = re.compile(path)
        return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    def created_of(self, resource: str) -> list[Created]:
        return [c for c in self.created if c.resource == resource]

    def mount(self, router: respx.MockRouter) -> respx.MockRouter:
        router.route(host=STRIPE_HOST).mock(side_effect=self.handle)
        return router

    # -- the API -----------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        form = parse_form(request.content) if request.method == "POST" else {}
        if request.method == "GET":
            form = dict(request.url.params)
        key = request.headers.get("Idempotency-Key")
        record = Recorded(request.method, path, form, key, request.headers.get("Stripe-Account"))
        self.requests.append(record)
        fault = next(
            (f for f in self.faults if f.method == request.method and f.path.fullmatch(path)),
            None,
        )
        if fault is not None:
            self.faults.remove(fault)
            record.outcome = fault.kind.value
            if fault.after_effect:
                self._answer(request, path, form, key, record)
            if fault.kind is FaultKind.timeout:
                raise httpx.ReadTimeout("fake stripe: timed out", request=request)
            if fault.kind is FaultKind.connection_error:
                raise httpx.ConnectError("fake stripe: connection refused", request=request)
            return FAULT_RESPONSES[fault.kind]()
        return self._answer(request, path, form, key, record)

    def _answer(
        self,
        request: httpx.Request,
        path: str,
        form: dict[str, Any],
        key: str | None,
        record: Recorded,
    ) -> httpx.Response:
        if key is not None and request.method == "POST":
            fingerprint = hashlib.sha256(f"{path}?{request.content!r}".encode()).hexdigest()
            cached = self._idempotent.get(key)
            if cached is not None:
                if cached[0] != fingerprint:
                    return stripe_error(
                        400,
                        "idempotency_error",
                        "idempotency_key_in_use",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                    )
                record.outcome = "replayed"
                return cached[1]
            response = self._route(request.method, path, form, key, record)
            if response.status_code < 500:
                self._idempotent[key] = (fingerprint, response)
            return response
        return self._route(request.method, path, form, key, record)

    def _route(
        self, method: str, path: str, form: dict[str, Any], key: str | None, record: Recorded
    ) -> httpx.Response:
        parts = path.strip("/").split("/")[1:]  # without "v1"
        if method == "POST" and parts == ["accounts"]:
            return self._ok(self._create("accounts", self._account(form), key))
        if method == "POST" and len(parts) == 3 and parts[0] == "accounts":
            link = stripe_object("login_link")
            link.update(url=f"https://connect.stripe.com/express/{parts[1]}/{self._id()}")
            return self._ok(self._create("login_links", link, key, keep_id=True))
        if method == "POST" and parts == ["account_links"]:
            link = stripe_object("account_link")
            now = int(time.time())
            link.update(
                url=f"https://connect.stripe.com/setup/e/{form.get('account')}/{self._id()}",
                created=now,
                expires_at=now + 300,
            )
            return self._ok(self._create("account_links", link, key, keep_id=True))
        if method == "GET" and parts == ["balance"]:
            balance = stripe_object("balance")
            return self._ok(balance)
        if method == "GET" and len(parts) == 2 and parts[0] == "charges":
            return self._ok(self._charge(parts[1]))
        if method == "GET" and parts == ["payouts"]:
            account = record.stripe_account
            payouts = [
                o
                for o in self.objects.values()
                if o.get("object") == "payout" and o.get("_account") == account
            ]
            return self._ok(
                {"object": "list", "url": "/v1/payouts", "has_more": False, "data": payouts}
            )
        if method == "GET" and len(parts) == 1:  # a list: what was created there
            listed = [self.objects[c.id] for c in self.created_of(parts[0])]
            return self._ok({"object": "list", "url": path, "has_more": False, "data": listed})
        if method == "POST" and parts == ["invoices", "create_preview"]:
            preview = copy.deepcopy(stripe_object("invoice"))
            preview.update(id=None, status="draft", amount_paid=0)
            return self._ok(preview)
        if len(parts) == 2 and parts[0] == "subscriptions" and parts[1] in self.objects:
            subscription = self.objects[parts[1]]
            if method == "DELETE":
                subscription.update(status="canceled", ended_at=int(time.time()))
            elif method == "POST" and "cancel_at_period_end" in form:
                subscription["cancel_at_period_end"] = form["cancel_at_period_end"] == "true"
            return self._ok(subscription)
        if method == "POST" and len(parts) == 3 and parts[0] == "payment_intents":
            return self._intent_action(parts[1], parts[2], form)
        if method == "POST" and parts == ["checkout", "sessions"]:
            return self._ok(self._create("checkout_sessions", self._session(form), key))
        if method == "POST" and len(parts) == 1:
            return self._ok(self._create(parts[0], self._generic(parts[0], form), key))
        if method == "GET" and len(parts) == 2 and parts[1] in self.objects:
            return self._ok(self.objects[parts[1]])
        return stripe_error(404, "invalid_request_error", "resource_missing", f"No such {path}")

    def _intent_action(self, intent_id: str, action: str, form: dict[str, Any]) -> httpx.Response:
        """Capture or cancel of an uncaptured PaymentIntent, as Stripe answers them: only
        from ``requires_capture`` (anything else is Stripe's 400
        ``payment_intent_unexpected_state``); a capture releases the uncaptured rest."""
        intent = self.objects.get(intent_id)
        if intent is None or intent.get("object") != "payment_intent":
            return stripe_error(
                404, "invalid_request_error", "resource_missing", f"No such {intent_id}"
            )
        if action not in ("capture", "cancel") or intent.get("status") != "requires_capture":
            return stripe_error(
                400,
                "invalid_request_error",
                "payment_intent_unexpected_state",
                f"This PaymentIntent's status is {intent.get('status')}.",
            )
        if action == "capture":
            amount = int(form.get("amount_to_capture") or intent["amount"])
            intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        else:
            reason = form.get("cancellation_reason") or "requested_by_customer"
            intent.update(status="canceled", amount_capturable=0, cancellation_reason=reason)
        return self._ok(intent)

    def authorized_intent(self, metadata: dict[str, str], amount: int, currency: str) -> str:
        """A PaymentIntent a customer's card authorized (``capture_method=manual``), as
        Checkout leaves it: ``requires_capture``. Returns its id."""
        intent = copy.deepcopy(stripe_object("payment_intent"))
        intent.update(
            amount=amount,
            amount_capturable=amount,
            amount_received=0,
            currency=currency,
            capture_method="manual",
            status="requires_capture",
            latest_charge=None,
            last_payment_error=None,
            cancellation_reason=None,
            metadata=metadata,
        )
        self._create("payment_intents", intent, None)
        return str(intent["id"])

    # -- objects -------------------------------------------------------------------------
    def _id(self) -> str:
        return f"{self._run}{uuid.uuid4().hex[:10]}"

    @staticmethod
    def _ok(body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(
            200,
            json={k: v for k, v in body.items() if not k.startswith("_")},
            headers={"Request-Id": f"req_{uuid.uuid4().hex[:14]}"},
        )

    def _create(
        self, resource: str, obj: dict[str, Any], key: str | None, *, keep_id: bool = False
    ) -> dict[str, Any]:
        if not keep_id:
            prefix = str(obj.get("id") or "obj_x").split("_")[0]
            obj["id"] = f"{prefix}_{self._id()}"
        obj_id = str(obj.get("id") or self._id())
        if obj.get("object") == "payment_intent":
            obj["client_secret"] = f"{obj_id}_secret_{self._id()}"
        if obj.get("object") == "checkout.session":
            obj["url"] = f"https://checkout.stripe.com/c/pay/{obj_id}"
        self.objects[obj_id] = obj
        self.created.append(Created(resource, obj_id, key))
        return obj

    def _generic(self, resource: str, form: dict[str, Any]) -> dict[str, Any]:
        """Stripe's example object for the resource, with the request's fields on it."""
        name = {"checkout": "checkout.session", "sessions": "checkout.session"}.get(
            resource, resource.rstrip("s") if resource != "refunds" else "refund"
        )
        try:
            obj = copy.deepcopy(stripe_object(name))
        except FileNotFoundError:
            obj = {"id": f"obj_{self._id()}", "object": name}
        copied = ("amount", "currency", "customer", "destination", "metadata", "email", "charge")
        for field_name in (*copied, "payment_intent"):
            if field_name in form:
                value = form[field_name]
                obj[field_name] = int(value) if field_name == "amount" else value
        obj["created"] = int(time.time())
        paid = self.objects.get(str(form.get("payment_intent")))
        if paid is not None and "currency" not in form:
            obj["currency"] = paid.get("currency")  # a refund is in the payment's currency
        if name == "payment_intent":
            obj.update(status="requires_payment_method", last_payment_error=None)
        return obj

    def _account(self, form: dict[str, Any]) -> dict[str, Any]:
        account = copy.deepcopy(stripe_object("account"))
        account.update(
            type="express",
            created=int(time.time()),
            metadata=form.get("metadata", {}),
            charges_enabled=self.accounts_enabled,
            payouts_enabled=self.accounts_enabled,
            details_submitted=self.accounts_enabled,
        )
        due = [] if self.accounts_enabled else ["external_account", "tos_acceptance.date"]
        account["requirements"].update(
            currently_due=due,
            eventually_due=due,
            past_due=[],
            disabled_reason=None if self.accounts_enabled else "requirements.past_due",
        )
        return account

    def _charge(self, charge_id: str) -> dict[str, Any]:
        charge = copy.deepcopy(stripe_object("charge"))
        transaction = copy.deepcopy(stripe_object("balance_transaction"))
        amount = int(charge.get("amount") or 0)
        transaction.update(
            id=f"txn_{charge_id}",
            amount=amount,
            fee=amount * self.fee_basis_points // 10_000 + 30,
            currency=charge.get("currency", "usd"),
        )
        charge.update(id=charge_id, balance_transaction=transaction)
        return charge

    def _session(self, form: dict[str, Any]) -> dict[str, Any]:
        session = copy.deepcopy(stripe_object("checkout.session"))
        line = (form.get("line_items") or [{}])[0]
        price = line.get("price_data", {})
        session.update(
            amount_total=int(price.get("unit_amount", 0)) * int(line.get("quantity", 1)),
            currency=price.get("currency"),
            customer=form.get("customer"),
            client_reference_id=form.get("client_reference_id"),
            metadata=form.get("metadata", {}),
            expires_at=int(form.get("expires_at") or time.time() + 1800),
            payment_intent=None,
            payment_status="unpaid",
            status="open",
            success_url=form.get("success_url"),
            cancel_url=form.get("cancel_url"),
        )
        return session

    # -- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope.get("query_string", b"").decode()
        url = f"https://{STRIPE_HOST}{scope['path']}" + (f"?{query}" if query else "")
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]]
        request = httpx.Request(scope["method"], url, headers=headers, content=body)
        try:
            response = self.handle(request)
        except httpx.TransportError:
            response = stripe_error(500, "api_error", "api_error", "fake transport error")
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": response.content})


def stripe_body(response: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.content)
    return data
