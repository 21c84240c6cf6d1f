"""The sandbox's Stripe, bottom layer: the plumbing every Stripe resource uses (loading,
rendering, listing, events, balance transactions), customers and the balance.

The sandbox's Stripe is one class, ``service.SandboxStripe``, built in layers, one module
per Stripe resource, each layer using only those below it: core → accounts → transfers
(and payouts) → disputes → intent_outcomes → payment_intents → refunds → checkout →
service. One instance per request, on that request's database transaction. API
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

from payments_api.money import format_minor
from payments_api.settings import Settings
from payments_api.stripe.base import STRIPE_API_VERSION
from payments_sandbox import objects
from payments_sandbox.errors import StripeApiError, invalid, no_such
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

CONFIRMABLE = ("requires_payment_method", "requires_confirmation")

# Stripe's reporting category of each balance transaction type the sandbox writes
# (an ``adjustment`` says its own: dispute or dispute_reversal).
REPORTING_CATEGORIES = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "refund_failure": "refund_failure",
    "transfer": "transfer",
    "transfer_refund": "transfer_reversal",
    "payout": "payout",
    "payout_failure": "payout_reversal",
}


class PageError(Exception):
    """A sandbox page action that cannot happen (shown on the page, nothing changes)."""


def format_money(amount: int, currency: str) -> str:
    return format_minor(amount, currency)


def strip_data(paths: list[str]) -> list[str]:
    """``expand[]=data.x`` on a list applies ``x`` to each item."""
    return [path[5:] for path in paths if path.startswith("data.")]


class SandboxCore:
    """The plumbing every Stripe resource uses (loading, rendering, listing, events,
    balance transactions), customers and the balance."""

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
        data = [await self.render(row.body, strip_data(p.expand())) for row in rows]
        return {"object": "list", "data": data, "has_more": has_more, "url": url}

    async def _txn(
        self,
        type_: str,
        amount: int,
        currency: str,
        *,
        category: str | None = None,
        source: str | None = None,
        account: str | None = None,
        fee: int = 0,
        fee_description: str = "Stripe processing fees",
        description: str | None = None,
    ) -> dict[str, Any]:
        """A balance transaction of ``type_`` on the platform (or ``account``); its
        reporting category is the type's unless given."""
        body = objects.balance_transaction(
            amount=amount,
            currency=currency,
            type=type_,
            reporting_category=category or REPORTING_CATEGORIES[type_],
            source=source,
            fee=fee,
            fee_description=fee_description,
            description=description,
        )
        await self.objects.add("balance_transaction", body, account=account)
        return body

    async def charge_card(self, intent: dict[str, Any], *, three_d_secure: bool) -> SandboxObject:
        """A succeeded charge of ``intent``'s card with its balance transaction (the
        amount less Stripe's card fee); the sandbox makes up the PaymentMethod when the
        intent has none. The caller updates the intent."""
        intent["payment_method"] = intent.get("payment_method") or objects.new_id("pm")
        amount, currency = int(intent["amount"]), str(intent["currency"])
        txn = await self._txn(
            "charge",
            amount,
            currency,
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
        return await self._add_with_txn("charge", charge, txn)

    async def available(self, account: str | None, currency: str) -> int:
        return sum(
            net
            for cur, status, net in await self.objects.balance(account)
            if cur == currency and status == "available"
        )

    # ---------------------------------------------------------------- balance transactions

    async def _add_with_txn(
        self, type_: str, body: dict[str, Any], txn: dict[str, Any], *, account: str | None = None
    ) -> SandboxObject:
        """Add the object ``body``, the source of its balance transaction ``txn`` (written
        first, as the object carries its id)."""
        await self._set_source(txn, body["id"])
        return await self.objects.add(type_, body, account=account)

    async def _set_source(self, txn: dict[str, Any], source: str) -> None:
        row = await self.objects.get(txn["id"])
        assert row is not None  # noqa: S101 - just written
        txn["source"] = source
        await self.objects.save(row, txn)

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
