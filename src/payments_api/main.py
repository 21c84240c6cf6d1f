"""The application factory and its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from payments_api import __doc__ as package_doc
from payments_api.admin.router import router as admin_router
from payments_api.audit.router import router as audit_router
from payments_api.auth import TokenVerifier, caller_id
from payments_api.balance.router import router as balance_router
from payments_api.checkout.router import router as checkout_router
from payments_api.db import create_engine, create_sessionmaker, resolve_database_url
from payments_api.disputes.router import router as disputes_router
from payments_api.docs_pages import install_docs_pages
from payments_api.earnings.router import router as earnings_router
from payments_api.escrow.router import router as escrow_router
from payments_api.events.delivery import DeliveryService, pump
from payments_api.events.router import router as events_router
from payments_api.events_spec import declare_webhooks
from payments_api.health.router import router as health_router
from payments_api.idempotency.middleware import IdempotencyMiddleware
from payments_api.kit import route_index
from payments_api.kit.middleware import RequestContextMiddleware
from payments_api.kit.ratelimit import (
    RateLimitMiddleware,
    build_storage,
    check_storage,
    close_storage,
)
from payments_api.logs import configure_logging
from payments_api.migrations import head_revisions
from payments_api.openapi.document import build_openapi
from payments_api.orders.router import router as orders_router
from payments_api.payins import wire_purposes
from payments_api.payment_methods.router import router as payment_methods_router
from payments_api.payout_accounts.router import router as payout_accounts_router
from payments_api.payouts.router import router as payouts_router
from payments_api.problems import (
    ProblemError,
    handle_http_exception,
    handle_problem,
    handle_validation,
)
from payments_api.profile.router import router as profile_router
from payments_api.projects.router import router as projects_router
from payments_api.reconciliation.metrics import refresh_gauges
from payments_api.reconciliation.router import router as reconciliation_router
from payments_api.refunds.escrow_cancel_router import router as escrow_cancel_router
from payments_api.refunds.router import router as refunds_router
from payments_api.settings import Settings, get_settings
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from payments_api.subscriptions.router import router as subscriptions_router
from payments_api.topups.router import router as topups_router
from payments_api.wallets.router import router as wallets_router
from payments_api.wallets.spends_router import router as wallet_spends_router
from payments_api.webhook_handlers import STRIPE_HANDLERS
from payments_api.webhooks.router import router as webhooks_router

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"


async def build_state(settings: Settings) -> AppState:
    url = resolve_database_url(settings)
    engine = create_engine(url, settings)
    return AppState(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        stripe=StripeGateway(settings),
        verifier=TokenVerifier(settings),
        migration_heads=frozenset(head_revisions()),
    )


async def dispose_state(state: AppState) -> None:
    await state.stripe.aclose()
    await state.engine.dispose()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if getattr(app.state, "resources", None) is not None:
        yield  # built by the caller (tests)
        return
    if settings.sandbox:
        log.warning("SANDBOX MODE: no PAYMENTS_STRIPE_SECRET_KEY is set; no real money can move")
    if app.state.rate_limit_storage is not None:
        await check_storage(app.state.rate_limit_storage, settings.rate_limit_storage_uri)
    state = await build_state(settings)
    app.state.resources = state
    # Built now rather than by the first request, which would wait for it: FastAPI
    # prepares its routes' contexts when first asked (0.3 s for this service's routes).
    route_index.route_table(app)
    stop_pump = asyncio.Event()
    pump_task: asyncio.Task[None] | None = None
    deliveries: DeliveryService | None = None
    if settings.sandbox:
        # No worker needed to see events in sandbox mode: serve delivers them itself.
        deliveries = DeliveryService(state.sessionmaker, settings)
        pump_task = asyncio.create_task(pump(deliveries, stop_pump))
    try:
        yield
    finally:
        stop_pump.set()
        if pump_task is not None:
            await pump_task
        if deliveries is not None:
            await deliveries.aclose()
        await dispose_state(state)
        app.state.resources = None
        if app.state.rate_limit_storage is not None:
            close_storage(app.state.rate_limit_storage)


def camel_case_operation_id(route: APIRoute) -> str:
    """Every route's operationId: its function's name in camelCase (``list_projects`` is
    ``listProjects``); a route names one itself only where it differs. Renaming a route's
    function renames its operation, which the committed openapi.json check catches."""
    head, *rest = route.name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    wire_purposes()
    configure_logging(settings.log_level, json_output=settings.log_json)
    app = FastAPI(
        title="payments-api",
        version=API_VERSION,
        summary="Payments backend for two-sided marketplaces on Stripe.",
        description=(package_doc or "")
        + "\n\nAll amounts are integers in the currency's minor unit (cents for usd). "
        "Errors are RFC 9457 problem documents with a stable `code`.",
        lifespan=lifespan,
        generate_unique_id_function=camel_case_operation_id,
        docs_url=None,  # served by install_docs_pages with local assets
        redoc_url=None,
        # FastAPI's native OpenTelemetry is off: the service reports through its own
        # Prometheus metrics and JSON logs (docs/operations.md), and the check FastAPI
        # makes on every request for configured OpenTelemetry providers (environment
        # lookups) was about 2% of a replay's or a balance read's CPU (bench/cpu.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.resources = None
    app.state.gauge_refreshers = (refresh_gauges,)
    app.state.webhook_handlers = STRIPE_HANDLERS
    app.state.rate_limit_storage = (
        build_storage(settings.rate_limit_storage_uri, settings.rate_limit_key_prefix)
        if settings.rate_limit_enabled
        else None
    )

    app.add_exception_handler(ProblemError, handle_problem)
    app.add_exception_handler(RequestValidationError, handle_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)

    app.include_router(health_router)
    app.include_router(profile_router)
    app.include_router(balance_router)
    app.include_router(admin_router)
    app.include_router(audit_router)
    app.include_router(checkout_router)
    app.include_router(topups_router)
    app.include_router(payment_methods_router)
    app.include_router(orders_router)
    app.include_router(wallet_spends_router)
    app.include_router(escrow_router)
    app.include_router(escrow_cancel_router)  # escrow's cancel route, kept in refunds
    app.include_router(earnings_router)
    app.include_router(payout_accounts_router)
    app.include_router(payouts_router)
    app.include_router(projects_router)
    app.include_router(refunds_router)
    app.include_router(disputes_router)
    app.include_router(reconciliation_router)
    app.include_router(subscriptions_router)
    app.include_router(webhooks_router)
    app.include_router(events_router)
    app.include_router(wallets_router)
    if settings.sandbox and not settings.is_production:
        # Imported only here: with a Stripe key the sandbox package is never loaded.
        from payments_sandbox.router import router as sandbox_router

        app.include_router(sandbox_router)
    declare_webhooks(app)
    install_docs_pages(app)
    route_index.install(app)  # after every route: it dispatches to them

    app.add_middleware(IdempotencyMiddleware)  # inside CORS, so replays get CORS headers too
    if settings.rate_limit_enabled:
        # Outside the idempotency layer: a request over the limit takes no key lease.
        app.add_middleware(
            RateLimitMiddleware,
            per_user=settings.rate_limit_per_user,
            per_ip=settings.rate_limit_per_ip,
            storage=app.state.rate_limit_storage,
            problem_base_url=settings.problem_base_url,
            identify_caller=caller_id,
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Idempotent-Replayed", "Retry-After"],
        )
    # Added last so it is the outermost layer: it sees every request and response.
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        problem_base_url=settings.problem_base_url,
        non_json_prefixes=("/sandbox/",),
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, limits=settings.limits_table())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory payments_api.main:app_factory``."""
    return create_app()
