"""The sandbox's Stripe-compatible HTTP API (``/sandbox/stripe/v1/...``): how every
operation is run. The routes are in ``api.py`` (payments), ``api_connect.py`` (Connect,
events) and ``api_billing.py`` (Billing), as tables: a ``Call`` per operation (its path,
the parameters Stripe accepts there, what it runs) and an ``ObjectRoutes`` per resource
read the same way (retrieve and list).

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
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from payments_api.stripe.base import STRIPE_API_VERSION
from payments_sandbox.errors import StripeApiError, invalid
from payments_sandbox.objects import random_tail
from payments_sandbox.params import Params, decode
from payments_sandbox.repository import IdempotencyRepository
from payments_sandbox.service import SandboxStripe
from payments_sandbox.wiring import sessionmaker_of, settings_of

Result = dict[str, Any] | StripeApiError
Operation = Callable[[SandboxStripe, Params], Awaitable[Result]]

LIST_PARAMS = ("limit", "starting_after", "ending_before", "created")


def names(words: str) -> tuple[str, ...]:
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


def respond(
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
        return respond(
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
        return respond(exc.status, exc.body(request_id), request_id, request)
    return respond(outcome[0], outcome[1], request_id, request, replayed=outcome[2])


def expanded(fetch: Callable[[SandboxStripe, Params], Awaitable[Result]]) -> Operation:
    """``fetch``, its object rendered with the request's ``expand[]`` (a refusal it
    returns, rather than raises, is passed on as it is)."""

    async def run(service: SandboxStripe, p: Params) -> Result:
        result = await fetch(service, p)
        if isinstance(result, StripeApiError):
            return result
        return await service.render(result, p.expand())

    return run


def retrieve(type_: str, object_id: str, *, resource: str | None = None) -> Operation:
    async def fetch(service: SandboxStripe, p: Params) -> dict[str, Any]:
        return (await service.load(object_id, type_, resource=resource)).body

    return expanded(fetch)


async def list_objects(
    request: Request,
    type_: str,
    url: str,
    filters: tuple[str, ...],
    *,
    also_allowed: tuple[str, ...] = (),
) -> Response:
    """A Stripe list route: the objects of ``type_`` a page at a time, narrowed by the
    equality ``filters``; ``also_allowed`` are parameters Stripe accepts there that the
    sandbox takes without filtering on them."""

    async def run(service: SandboxStripe, p: Params) -> Result:
        return await service.listing(p, type_, url, filters=filters)

    return await execute(request, run, (*LIST_PARAMS, *filters, *also_allowed))


@dataclass(frozen=True)
class ObjectRoutes:
    """A Stripe resource's read routes: ``GET /v1/{path}/{id}`` and, when ``filters``
    is given, the list ``GET /v1/{path}`` (see ``list_objects``)."""

    type_: str
    path: str
    filters: tuple[str, ...] | None = None
    also_allowed: tuple[str, ...] = ()
    retrieve_allowed: tuple[str, ...] = ()
    resource: str | None = None
    """What Stripe's ``No such ...`` calls it, when not ``type_`` in words."""


def add_object_routes(router: APIRouter, *resources: ObjectRoutes) -> None:
    for resource in resources:
        router.add_api_route(
            f"/{resource.path}/{{object_id}}",
            _retrieve_route(resource),
            methods=["GET"],
            name=f"retrieve_{resource.type_}",
        )
        if resource.filters is not None:
            router.add_api_route(
                f"/{resource.path}",
                _list_route(resource, resource.filters),
                methods=["GET"],
                name=f"list_{resource.type_}",
            )


def _retrieve_route(resource: ObjectRoutes) -> Callable[[Request, str], Awaitable[Response]]:
    async def retrieve_object(request: Request, object_id: str) -> Response:
        operation = retrieve(resource.type_, object_id, resource=resource.resource)
        return await execute(request, operation, resource.retrieve_allowed)

    return retrieve_object


def _list_route(
    resource: ObjectRoutes, filters: tuple[str, ...]
) -> Callable[[Request], Awaitable[Response]]:
    async def list_of_objects(request: Request) -> Response:
        return await list_objects(
            request,
            resource.type_,
            f"/v1/{resource.path}",
            filters,
            also_allowed=resource.also_allowed,
        )

    return list_of_objects


PathOperation = Callable[..., Awaitable[Result]]
"""``run(service, params, *path_values)``: the values of the path's ``{...}`` parts in
order (``/disputes/{dispute_id}/close`` passes the dispute's id)."""


@dataclass(frozen=True)
class Call:
    """One Stripe operation besides the plain reads: ``method path``, the top-level
    parameters Stripe accepts there (``allowed``, space separated: any other is
    refused), what it runs, and whether its object is rendered with the request's
    ``expand[]`` (Stripe expands what a create or update returns, not what an action
    such as ``cancel`` or ``attach`` returns in the sandbox's subset)."""

    method: str
    path: str
    run: PathOperation
    allowed: str = ""
    expand: bool = True


def add_calls(router: APIRouter, *calls: Call) -> None:
    for call in calls:
        router.add_api_route(
            call.path,
            _call_route(call),
            methods=[call.method],
            name=f"{call.method.lower()} {call.path}",
        )


def _call_route(call: Call) -> Callable[[Request], Awaitable[Response]]:
    allowed = names(call.allowed)

    async def run_call(request: Request) -> Response:
        path_values = tuple(request.path_params.values())

        async def operation(service: SandboxStripe, p: Params) -> Result:
            return await call.run(service, p, *path_values)

        return await execute(request, expanded(operation) if call.expand else operation, allowed)

    return run_call
