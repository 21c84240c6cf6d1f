"""Payout account routes (SPEC 6.3, binding contract) and the onboarding landing pages."""

from __future__ import annotations

import html
from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from payments_api import routes
from payments_api.deps import AdminUser, SessionDep, SettingsDep, StripeDep, require_role
from payments_api.payout_accounts import errors as payout_accounts_errors
from payments_api.payout_accounts.errors import InvalidLinkState
from payments_api.payout_accounts.links import REFRESH_PATH, RETURN_PATH
from payments_api.payout_accounts.schemas import (
    DashboardLinkRead,
    OnboardingLinkRead,
    PayoutAccountEnvelope,
)
from payments_api.payout_accounts.service import PAYEE_ROLE, ConnectService
from payments_api.problems import problem_responses
from payments_api.stripe.errors import PaymentProviderError, PaymentProviderUnavailable
from payments_api.users.models import User

# Tags per route: the admin resync belongs with the other admin operations.
router = APIRouter()
TAGS: list[str | Enum] = ["payout-account"]

PayeeUser = Annotated[User, Depends(require_role(PAYEE_ROLE))]
# What asking Stripe for one of the payee's account links can answer.
LINK_PROBLEMS = (401, 403, *routes.PROVIDER_PROBLEMS)


async def get_connect_service(
    session: SessionDep, stripe: StripeDep, settings: SettingsDep
) -> ConnectService:
    return ConnectService(session, stripe, settings)


ConnectServiceDep = Annotated[ConnectService, Depends(get_connect_service)]
# The signed state this service puts in the URLs it gives Stripe, read back on the landings.
_STATE = Query(
    max_length=2048,
    description="Signed, short-lived state this service put in the URL it gave Stripe.",
)
StateQuery = Annotated[str | None, _STATE]
# Required on the refresh landing: Stripe always sends back the URL this service gave
# it, state included, so a request without one is not a browser coming back from
# Stripe and gets the 422 problem, not a page.
RequiredStateQuery = Annotated[str, _STATE]

# The landing pages carry a bearer-like state in their URL: never cache them, never
# leak the URL to another site through Referer.
_LANDING_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(title: str, message: str, status_code: int = 200) -> HTMLResponse:
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;'
        'padding:0 1rem">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status_code, headers=_LANDING_HEADERS)


@router.get(
    "/api/v1/me/payout-account",
    summary="The caller's payout account (Stripe Connect Express) and its status",
    tags=TAGS,
    responses=problem_responses(401, 403),
)
async def get_payout_account(user: PayeeUser, service: ConnectServiceDep) -> PayoutAccountEnvelope:
    return PayoutAccountEnvelope(payout_account=await service.get(user.id))


@router.post(
    "/api/v1/me/payout-account/onboarding-link",
    summary="Create the Express account if needed and a fresh onboarding link",
    description="Creates the caller's Express account on the first call (exactly one per "
    "user, also under concurrent calls), then returns a new single-use onboarding `url`. "
    "Links are never cached: call again for a new one. Coming back from Stripe does not "
    "complete anything; the status changes when Stripe says so.",
    tags=TAGS,
    operation_id="createPayoutAccountOnboardingLink",
    responses=problem_responses(*LINK_PROBLEMS, payout_accounts_errors.PayoutAccountBusy),
)
async def create_onboarding_link(user: PayeeUser, service: ConnectServiceDep) -> OnboardingLinkRead:
    return await service.onboarding_link(user)


@router.post(
    "/api/v1/me/payout-account/dashboard-link",
    summary="A one-time Express dashboard login link",
    description="422 `payout_setup_incomplete` until the payee has completed onboarding.",
    tags=TAGS,
    operation_id="createPayoutAccountDashboardLink",
    responses=problem_responses(*LINK_PROBLEMS, payout_accounts_errors.PayoutSetupIncomplete),
)
async def create_dashboard_link(user: PayeeUser, service: ConnectServiceDep) -> DashboardLinkRead:
    return await service.dashboard_link(user)


@router.get(
    REFRESH_PATH,
    summary="Landing of an expired onboarding link: redirects to a fresh one",
    description="Stripe sends the browser here when an onboarding link expired or was "
    "used. No bearer token: the signed `state` in the URL identifies the payee. Answers "
    "302 to a new Stripe link, or an HTML page when the state is invalid or expired; "
    "without `state` it answers the 422 problem `validation_error`.",
    tags=TAGS,
    operation_id="refreshPayoutAccountOnboarding",
    response_class=HTMLResponse,
    responses={302: {"description": "Redirect to a new Stripe onboarding link."}},
)
async def refresh_onboarding(service: ConnectServiceDep, state: RequiredStateQuery) -> Response:
    try:
        url = await service.refresh_onboarding_url(state)
    except InvalidLinkState:
        return _page(
            "This setup link has expired",
            "Go back to the app and open payout setup again to continue.",
            status_code=400,
        )
    except (PaymentProviderUnavailable, PaymentProviderError):
        return _page(
            "Payout setup is unavailable",
            "We could not reach our payment provider. Please try again in a moment.",
            status_code=503,
        )
    return RedirectResponse(url, status_code=302, headers=_LANDING_HEADERS)


@router.get(
    RETURN_PATH,
    summary="Landing after onboarding: a page or a redirect to the app",
    description="Stripe sends the browser here when the payee leaves onboarding, "
    "finished or not. This is NOT a completion signal: it only makes the next "
    "`GET /api/v1/me/payout-account` ask Stripe. Redirects to "
    "`PAYMENTS_CONNECT_RETURN_URL` when configured, else shows a small HTML page.",
    tags=TAGS,
    operation_id="returnFromPayoutAccountOnboarding",
    response_class=HTMLResponse,
    responses={302: {"description": "Redirect to the configured app deep link."}},
)
async def return_from_onboarding(
    service: ConnectServiceDep, settings: SettingsDep, state: StateQuery = None
) -> Response:
    await service.record_return(state)
    if settings.connect_return_url:
        return RedirectResponse(
            settings.connect_return_url, status_code=302, headers=_LANDING_HEADERS
        )
    return _page(
        "You can return to the app",
        "We will update your payout status as soon as Stripe confirms your details.",
    )


@router.post(
    "/api/v1/admin/payout-accounts/{user_id}/sync",
    summary="Re-read a user's payout account from Stripe now",
    description="Stripe can change capabilities without sending an event; this forces a "
    "read. Audited.",
    tags=["admin"],
    responses=problem_responses(
        401, 403, payout_accounts_errors.PayoutAccountNotFound, *routes.PROVIDER_PROBLEMS
    ),
)
async def sync_payout_account(
    user_id: Annotated[str, Path(max_length=255, description="The payee's user id.")],
    admin: AdminUser,
    service: ConnectServiceDep,
    request_id: routes.RequestIdDep,
) -> PayoutAccountEnvelope:
    payout_account = await service.force_sync(user_id, actor=admin, request_id=request_id)
    return PayoutAccountEnvelope(payout_account=payout_account)
