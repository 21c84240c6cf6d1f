"""The gateway's foundation: stripe-python's ``StripeClient`` on its httpx client.

Every write carries an idempotency key chosen by the caller and derived from our own
record ids (``"{operation}:{row_id}"``), so a retried request never creates a second
Stripe object. Errors are mapped to the service's problems here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from prometheus_client import Counter

import stripe
from payments_api.settings import Settings, stripe_api_base
from payments_api.stripe.errors import (
    CardDeclined,
    PaymentProviderError,
    PaymentProviderUnavailable,
    ProviderObjectMissing,
)
from payments_api.stripe.objects import MalformedStripeObject, ObjectT, parse_object

log = logging.getLogger(__name__)

STRIPE_CALLS = Counter(
    "payments_stripe_calls_total",
    "Stripe API calls by operation and outcome",
    ["operation", "outcome"],
)

# The one place the Stripe API version is pinned. Webhook endpoints must be created
# with the same version so event payloads match what the handlers parse.
STRIPE_API_VERSION = "2026-10-28.endive"

# Used only when no key is configured (sandbox mode, see the sandbox package): it can
# never authenticate against the real API.
SANDBOX_API_KEY = "sk_test_sandbox_offline"

T = TypeVar("T")


class GatewayBase:
    """Client construction, error mapping and request options shared by all calls."""

    def __init__(self, settings: Settings) -> None:
        api_key = (
            settings.stripe_secret_key.get_secret_value()
            if settings.stripe_secret_key is not None
            else SANDBOX_API_KEY
        )
        self._http_client = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds)
        self._client = stripe.StripeClient(
            api_key,
            stripe_version=STRIPE_API_VERSION,
            base_addresses={"api": stripe_api_base(settings)},
            max_network_retries=settings.stripe_max_network_retries,
            http_client=self._http_client,
        )

    async def aclose(self) -> None:
        await self._http_client.close_async()  # type: ignore[no-untyped-call]

    async def _call(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        *,
        client_ids: frozenset[str] = frozenset(),
    ) -> T:
        """Run one Stripe call and map its errors. ``client_ids`` are the parameters that
        carry ids the client chose: Stripe not knowing one is the client's 422
        (``provider_object_missing``), not a 502."""
        try:
            result = await call()
        except stripe.StripeError as exc:
            STRIPE_CALLS.labels(operation, type(exc).__name__).inc()
            log.info(
                "stripe call failed",
                extra={"operation": operation, "stripe_request_id": exc.request_id},
            )
            if (
                isinstance(exc, stripe.InvalidRequestError)
                and exc.code == "resource_missing"
                and exc.param in client_ids
            ):
                raise ProviderObjectMissing(
                    f"The payment provider has no object by the id given in `{exc.param}`.",
                    param=exc.param,
                ) from exc
            self._raise_mapped(operation, exc)
        STRIPE_CALLS.labels(operation, "ok").inc()
        response = getattr(result, "last_response", None)
        log.info(
            "stripe call",
            extra={
                "operation": operation,
                "stripe_request_id": getattr(response, "request_id", None),
            },
        )
        return result

    @staticmethod
    def _raise_mapped(operation: str, exc: stripe.StripeError) -> NoReturn:
        """Our problem for Stripe's error; Stripe's own text never reaches a client."""
        if isinstance(exc, stripe.CardError):
            raise CardDeclined(
                "The card was declined.",
                decline_code=(exc.error.decline_code if exc.error else None) or exc.code,
            ) from exc
        if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
            log.warning("stripe %s unavailable: %s", operation, type(exc).__name__)
            raise PaymentProviderUnavailable("The payment provider is unavailable.") from exc
        if isinstance(exc, stripe.APIError):
            log.warning("stripe %s failed with %s", operation, exc.http_status)
            raise PaymentProviderUnavailable("The payment provider is unavailable.") from exc
        # Invalid requests, auth and permission errors are our bug or our configuration:
        # log Stripe's own words for operators, tell the client less.
        log.error(
            "stripe %s rejected: status=%s code=%s request_id=%s message=%s",
            operation,
            exc.http_status,
            exc.code,
            exc.request_id,
            exc.user_message or str(exc),
        )
        raise PaymentProviderError("The payment provider rejected the request.") from exc

    async def _request(
        self,
        model: type[ObjectT],
        operation: str,
        *ids: str,
        params: Any = None,
        idempotency_key: str | None = None,
        stripe_account: str | None = None,
        client_ids: frozenset[str] = frozenset(),
    ) -> ObjectT:
        """One call of the client's ``v1.<operation>`` (``payment_intents.capture`` is
        ``v1.payment_intents.capture_async``) on the object ``ids`` name, its errors
        mapped and its answer read as ``model``. The operation's name is the client's
        path, so the metric and log label can never name another call than the one
        made."""
        method = self._method(operation)
        arguments: dict[str, Any] = {"options": self._options(idempotency_key, stripe_account)}
        if params is not None:
            arguments["params"] = params
        result = await self._call(
            operation, lambda: method(*ids, **arguments), client_ids=client_ids
        )
        return self._typed(operation, model, result)

    async def _list_every(self, model: type[ObjectT], operation: str, params: Any) -> list[ObjectT]:
        """Every object of every page of the list ``operation`` (auto-paginated), each
        read as ``model``; the later pages' errors are mapped like the first's."""
        method = self._method(operation)

        async def collect() -> list[ObjectT]:
            page = await method(params=params)
            return [self._typed(operation, model, item) async for item in page.auto_paging_iter()]

        return await self._call(operation, collect)

    def _method(self, operation: str) -> Callable[..., Awaitable[Any]]:
        *path, verb = operation.split(".")
        service: Any = self._client.v1
        for name in path:
            service = getattr(service, name)
        method: Callable[..., Awaitable[Any]] = getattr(service, f"{verb}_async")
        return method

    @staticmethod
    def _typed(operation: str, model: type[ObjectT], result: Any) -> ObjectT:
        """Stripe's answer as ``model``. An answer without what the service reads is
        the provider's fault: a 502, never a half-read object."""
        # stripe-python's objects, or a plain dict where it left one (an error's body).
        data = result.to_dict() if hasattr(result, "to_dict") else result
        try:
            return parse_object(model, data)
        except MalformedStripeObject as exc:
            log.error("stripe %s answered a malformed object: %s", operation, exc)
            raise PaymentProviderError("The payment provider answered unexpectedly.") from exc

    @staticmethod
    def _options(idempotency_key: str | None = None, stripe_account: str | None = None) -> Any:
        options: dict[str, str] = {}
        if idempotency_key is not None:
            options["idempotency_key"] = idempotency_key
        if stripe_account is not None:
            options["stripe_account"] = stripe_account
        return options
