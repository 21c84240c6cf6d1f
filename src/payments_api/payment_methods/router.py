"""Saved cards of the caller: save (SetupIntent), list, default, remove."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.convertors import Convertor, register_url_convertor

from payments_api import routes
from payments_api.deps import CurrentUser, PrincipalDep, SessionDep, SettingsDep, StateDep
from payments_api.kit.idempotency import IdempotencyKeyDep
from payments_api.payment_methods import errors, schemas
from payments_api.payment_methods.service import PaymentMethodManager, PaymentMethodService, remove
from payments_api.problems import problem_responses

router = APIRouter(tags=["payment-methods"])


class SavedCardId(Convertor[str]):
    """Any segment but ``setup``: ``/payment-methods/setup`` is never taken for a card id
    (a DELETE there is 405 with ``Allow: POST``, as the document says)."""

    regex = "(?!setup(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("saved_card", SavedCardId())

MethodId = Annotated[
    str, Path(max_length=64, description="A saved card's id.", examples=["pmt_12"])
]


@router.post(
    "/api/v1/me/payment-methods/setup",
    summary="Start saving a card: a SetupIntent for off-session use",
    description="Creates a Stripe SetupIntent (`usage=off_session`) for the caller's Stripe "
    "Customer and returns its client secret for Stripe's SDK. The card appears in "
    "`GET /api/v1/me/payment-methods` when Stripe sends `setup_intent.succeeded`, never "
    "on the client's word.",
    operation_id="createPaymentMethodSetup",
    status_code=201,
    responses=problem_responses(400, 401, 409, *routes.PROVIDER_PROBLEMS),
)
async def create_setup(
    state: StateDep, principal: PrincipalDep, idempotency_key: IdempotencyKeyDep
) -> schemas.SetupIntentRead:
    service = PaymentMethodService(state.sessionmaker, state.stripe, principal)
    return await service.setup(idempotency_key)


@router.get(
    "/api/v1/me/payment-methods",
    summary="The caller's saved cards",
    description="Active saved cards, newest first: brand, last four digits, expiry and "
    "which one is the default (charged by off-session top-ups).",
    responses=problem_responses(401),
)
async def list_payment_methods(user: CurrentUser, session: SessionDep) -> schemas.PaymentMethodList:
    return await PaymentMethodManager(session).list(user)


@router.post(
    "/api/v1/me/payment-methods/{payment_method_id:saved_card}/default",
    summary="Make a saved card the default",
    operation_id="setDefaultPaymentMethod",
    responses=problem_responses(
        401, 409, errors.PaymentMethodNotFound, errors.PaymentMethodDetached
    ),
)
async def set_default(
    payment_method_id: MethodId, user: CurrentUser, session: SessionDep
) -> schemas.PaymentMethodRead:
    return await PaymentMethodManager(session).make_default(user, payment_method_id)


@router.delete(
    "/api/v1/me/payment-methods/{payment_method_id:saved_card}",
    summary="Remove a saved card (detached at Stripe)",
    description="The card can no longer be charged from this call on, and is detached from "
    "the Stripe Customer. Idempotent: removing a removed card answers the same. If it was "
    "the default, the newest remaining card becomes the default.",
    responses=problem_responses(401, 409, errors.PaymentMethodNotFound, *routes.PROVIDER_PROBLEMS),
)
async def delete_payment_method(
    payment_method_id: MethodId, state: StateDep, principal: PrincipalDep
) -> schemas.PaymentMethodRead:
    return await remove(state.sessionmaker, state.stripe, principal, payment_method_id)


@router.put(
    "/api/v1/me/auto-reloads",
    summary="Set auto-reload for a currency",
    description="When the caller's available balance falls below `threshold`, `amount` is "
    "charged to the default saved card off-session (a top-up, credited when Stripe "
    "confirms it): exactly one top-up per fall below, however many debits cross at once. "
    "Setting it again re-arms it; `enabled: false` turns it off.",
    responses=problem_responses(401, 409, *routes.AMOUNT_PROBLEMS),
)
async def set_auto_reload(
    body: schemas.AutoReloadSet, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.AutoReloadRead:
    return await PaymentMethodManager(session).set_auto_reload(user, body, settings)


@router.get(
    "/api/v1/me/auto-reloads",
    summary="The caller's auto-reload settings",
    responses=problem_responses(401),
)
async def list_auto_reloads(user: CurrentUser, session: SessionDep) -> schemas.AutoReloadList:
    return await PaymentMethodManager(session).auto_reloads(user)
