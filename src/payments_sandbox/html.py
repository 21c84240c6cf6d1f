"""The sandbox pages' rendering: Jinja2 templates (``templates/``, package data) with
autoescape on, so every value a page shows is text, never markup. No JavaScript; every
page carries the SANDBOX banner (``base.html``)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader

from payments_api.money import CURRENCY_EXPONENTS, format_minor

BANNER = (
    "SANDBOX — simulated Stripe. No real card is charged, no real money moves, "
    "nothing leaves this machine."
)


def money(amount: Any, currency: Any) -> str:
    code = str(currency or "").lower()
    if isinstance(amount, int) and code in CURRENCY_EXPONENTS:
        return format_minor(amount, code)
    return f"{amount} {code}".strip()


def _blank_none(value: Any) -> Any:
    # A field Stripe leaves null (an arrival date not known yet) shows as nothing.
    return "" if value is None else value


_environment = Environment(
    loader=PackageLoader("payments_sandbox", "templates"),
    autoescape=True,
    finalize=_blank_none,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["money"] = money


def page(template: str, title: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _environment.get_template(template).render(title=title, banner=BANNER, **context)
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"},
    )


def message(title: str, text: str, *, back: str = "", status_code: int) -> HTMLResponse:
    """A page that only says something (not found, an action refused)."""
    return page("message.html", title, status_code=status_code, text=text, back=back)
