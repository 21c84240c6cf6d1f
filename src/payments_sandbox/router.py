"""The sandbox (SPEC 8): a Stripe-compatible API and Stripe's hosted pages, served by
this service itself when no Stripe key is configured.

The service never knows: with no key, ``settings.stripe_api_base`` points the real
gateway at ``/sandbox/stripe``, and the events the sandbox emits arrive signed at the
real webhook routes. With a key (or in production) every sandbox route is a 404 and no
sandbox job runs. See docs/sandbox.md.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.exceptions import HTTPException

from payments_sandbox.admin_pages import router as admin_pages_router
from payments_sandbox.api import router as api_router
from payments_sandbox.pages import router as pages_router
from payments_sandbox.wiring import sandbox_enabled
from payments_sandbox.worker import SandboxWorker

log = logging.getLogger(__name__)


async def require_sandbox(request: Request) -> None:
    """Sandbox routes do not exist when a real Stripe key is configured."""
    if not sandbox_enabled(request.app.state.settings):
        raise HTTPException(status_code=404)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the sandbox's jobs (webhook deliveries, housekeeping) from the web process
    (``serve`` may run without a worker). Runs after the application's own lifespan has
    built its state."""
    resources = getattr(app.state, "resources", None)
    settings = app.state.settings
    if resources is None or not sandbox_enabled(settings):
        yield
        return
    base = settings.public_base_url.rstrip("/")
    log.warning(
        "SANDBOX: Stripe is simulated by this service (API %s/sandbox/stripe/v1, pages "
        "%s/sandbox/); events are signed with the sandbox webhook secret",
        base,
        base,
    )
    database_url = resources.engine.url.render_as_string(hide_password=False)
    worker = SandboxWorker(database_url, resources.sessionmaker, settings)
    await worker.start()
    app.state.sandbox_worker = worker
    try:
        yield
    finally:
        app.state.sandbox_worker = None
        await worker.stop()


router = APIRouter(
    tags=["sandbox"],
    include_in_schema=False,
    dependencies=[Depends(require_sandbox)],
    lifespan=lifespan,
)
router.include_router(api_router)
router.include_router(pages_router)
router.include_router(admin_pages_router)
