"""How sandbox routes reach the application's state (no FastAPI dependency magic, so the
Stripe API routes stay plain ``Request -> Response`` handlers)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from payments_api.settings import Settings
from payments_api.state import AppState


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.resources
    return state


def settings_of(request: Request) -> Settings:
    return _state(request).settings


def sessionmaker_of(request: Request) -> async_sessionmaker[AsyncSession]:
    return _state(request).sessionmaker


def sandbox_enabled(settings: Settings) -> bool:
    """The sandbox exists only without a Stripe key, and never in production."""
    return settings.sandbox and not settings.is_production
