"""Interactive API docs (`/docs`, `/redoc`) that work with no network.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so they were blank on an
offline machine -- and the sandbox promises to work with no network. The assets are
their maintainers' own npm distributions, vendored unchanged in ``static/`` with their
licences (swagger-ui-dist: Apache-2.0 with its NOTICE; redoc: MIT; the bundled
third-party notices beside each bundle), versions and SHA-256 in ``static/MANIFEST.json``
(``scripts/vendor_docs_assets.sh`` refreshes them). They are served from this process
under ``/docs-assets/``, licences included; only the HTML shells are FastAPI's own.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
# The pages may load nothing from elsewhere: ReDoc's bundle still draws a Redocly logo
# from its CDN (and hides it when the load fails), and Swagger UI would follow a spec's
# external references. The browser then refuses such requests before they leave the
# machine. Inline script and styles are FastAPI's page shells and the libraries' own;
# ReDoc runs its search index in a worker from a blob: URL.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-ancestors 'self'",
    ]
)
ASSETS_DIR = Path(__file__).resolve().parent / "static"


def install_docs_pages(app: FastAPI) -> None:
    """Serve `/docs` and `/redoc` with local assets (the app is built with both off)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    title = f"{app.title} {app.version}"
    favicon = f"{ASSETS_PATH}/swagger-ui/favicon-32x32.png"
    swagger_ui = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=title,
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=favicon,
    )
    redoc = get_redoc_html(
        openapi_url="/openapi.json",
        title=title,
        redoc_js_url=f"{ASSETS_PATH}/redoc/redoc.standalone.js",
        redoc_favicon_url=favicon,
        with_google_fonts=False,
    )
    _serve_offline(app, "/docs", "swagger_ui", swagger_ui)
    _serve_offline(app, "/redoc", "redoc", redoc)


def _serve_offline(app: FastAPI, path: str, name: str, rendered: HTMLResponse) -> None:
    """GET ``path``: the page ``rendered`` once (it depends on nothing but the app),
    allowed to load nothing from elsewhere."""
    html = bytes(rendered.body)

    async def page() -> HTMLResponse:
        response = HTMLResponse(html)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response

    app.add_api_route(path, page, methods=["GET"], name=name, include_in_schema=False)
