"""How domains plug their Stripe event handlers into the webhook inbox.

Each domain that reacts to Stripe events exposes ``HANDLERS: dict[str, EventHandler]``
in its own ``webhook_handlers.py``; ``payments_api/webhook_handlers.py`` merges them
explicitly into one :class:`HandlerTable` (no import-time registration) that the app and
the worker hand to the inbox. A handler runs inside the database transaction that marks
the event processed, so its writes and the "processed" mark commit together; it must
be idempotent (ledger cause keys make money movements so) and must not let an older
event overwrite newer state (compare ``event.created`` or the object's status order).
A handler that raises is recorded on the event and retried later.

Most handlers read the event's object as a typed model (``payments_api.stripe.objects``):
``reads(PaymentIntent, handler)`` parses ``data.object`` before the handler runs, and an
object that does not fit the model is recorded as malformed, not retried (it would not
change) and not applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import ObjectT, parse_object


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """A verified Stripe event as stored in the inbox."""

    id: str
    type: str
    created: int
    """Unix seconds when Stripe created the event: the order of truth between events."""
    livemode: bool
    account: str | None
    """The connected account (``acct_...``) for Connect events, else None."""
    data_object: dict[str, Any]
    """``event.data.object``: the Stripe object as it was when the event fired."""
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HandlerContext:
    session: AsyncSession
    stripe: StripeGateway
    settings: Settings


EventHandler = Callable[[StripeEvent, HandlerContext], Awaitable[None]]


TypedHandler = Callable[[StripeEvent, ObjectT, HandlerContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _ReadsObject(Generic[ObjectT]):
    model: type[ObjectT]
    handler: TypedHandler[ObjectT]

    async def __call__(self, event: StripeEvent, context: HandlerContext) -> None:
        # MalformedStripeObject (before any write) tells the inbox not to retry.
        await self.handler(event, parse_object(self.model, event.data_object), context)


def reads(model: type[ObjectT], handler: TypedHandler[ObjectT]) -> EventHandler:
    """``handler`` as an :data:`EventHandler` that gets ``event.data.object`` parsed as
    ``model``."""
    return _ReadsObject(model, handler)


class RetryLater(Exception):
    """Raised by a handler when the event cannot be applied yet (e.g. the object it
    refers to is not known yet): recorded and retried, never dropped."""


@dataclass(frozen=True, slots=True)
class HandlerTable:
    """Which handler applies which event type, per webhook endpoint."""

    platform: Mapping[str, EventHandler]
    connect: Mapping[str, EventHandler]

    def handler_for(self, endpoint: str, event_type: str) -> EventHandler | None:
        handlers = self.platform if endpoint == "platform" else self.connect
        return handlers.get(event_type)
