"""Tiny server-side HTML for the sandbox pages: no JavaScript, no template engine.

Everything interpolated goes through ``esc``; every page carries the SANDBOX banner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from fastapi.responses import HTMLResponse

from payments_api.money import CURRENCY_EXPONENTS, format_minor

BANNER = (
    "SANDBOX — simulated Stripe. No real card is charged, no real money moves, "
    "nothing leaves this machine."
)

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1a1a2e;
background:#f6f7fb}
.banner{background:#ffb020;color:#1a1a2e;font-weight:700;padding:10px 16px;text-align:center;
letter-spacing:.02em;border-bottom:3px solid #c77d00}
main{max-width:1100px;margin:24px auto;padding:0 16px}
.card{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:20px;
margin-bottom:20px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:0}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e6e8ef;vertical-align:top}
th{color:#555;font-weight:600}
code{font-size:.85em;background:#f0f1f6;padding:1px 4px;border-radius:4px}
form.inline{display:inline-block;margin:2px 4px 2px 0}
button{border:0;border-radius:6px;padding:8px 14px;font-size:.95rem;cursor:pointer;
background:#5469d4;color:#fff}
button.secondary{background:#e6e8ef;color:#1a1a2e}
button.danger{background:#df1b41}
button.small{padding:4px 9px;font-size:.8rem}
.amount{font-size:2rem;font-weight:700;margin:8px 0 16px}
.notice{padding:10px 14px;border-radius:6px;margin:12px 0}
.notice.error{background:#fde8ec;color:#8a1029}.notice.ok{background:#e3f7ec;color:#0b6b3a}
.muted{color:#6b7080;font-size:.85rem}
input{padding:5px;border:1px solid #ccd;border-radius:5px;width:7em}
select{padding:5px;border-radius:5px}
footer{max-width:1100px;margin:0 auto 40px;padding:0 16px;color:#6b7080;font-size:.85rem}
"""


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def money(amount: Any, currency: Any) -> str:
    code = str(currency or "").lower()
    if isinstance(amount, int) and code in CURRENCY_EXPONENTS:
        return esc(format_minor(amount, code))
    return esc(f"{amount} {code}".strip())


def page(title: str, body: str, *, status_code: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>SANDBOX · {esc(title)}</title><style>{_STYLE}</style></head>
<body><div class="banner" role="alert">{esc(BANNER)}</div>
<main><h1>{esc(title)} <span class="muted">(sandbox)</span></h1>{body}</main>
<footer>payments-api sandbox · <a href="/sandbox/">sandbox admin</a> ·
events are signed with the sandbox webhook secret and POSTed to this service's own
webhook routes.</footer></body></html>"""
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"},
    )


def button(
    action: str,
    label: str,
    *,
    fields: Mapping[str, Any] | None = None,
    css: str = "",
    extra: str = "",
) -> str:
    """A one-button POST form (``extra``: more inputs, already escaped)."""
    hidden = "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in (fields or {}).items()
    )
    return (
        f'<form class="inline" method="post" action="{esc(action)}">{hidden}{extra}'
        f'<button type="submit" class="{esc(css)}">{esc(label)}</button></form>'
    )


def table(
    headers: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str = "None yet."
) -> str:
    """Cells are HTML (escape what you put in them)."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def notice(text: str, *, kind: str = "error") -> str:
    return f'<div class="notice {esc(kind)}">{esc(text)}</div>'


def card(title: str, body: str, *, anchor: str = "") -> str:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f'<section class="card"{ident}><h2>{esc(title)}</h2>{body}</section>'
