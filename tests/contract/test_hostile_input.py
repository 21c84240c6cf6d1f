"""Bad characters never reach a 500 and never store anything.

Each class of hostile input (NUL bytes, lone UTF-16 surrogates, non-ASCII digits,
malformed numbers, over-long or malformed claims and signed events) on each kind of
field (JSON body string, query parameter, path id, cursor, JWT claim, webhook header and
body) answers a 4xx problem with a stable code, and the database is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.models import Escrow
from payments_api.ledger.models import LedgerTransaction
from payments_api.orders.models import Order
from payments_api.users.models import User
from payments_api.webhooks.models import WebhookEvent
from tests.conftest import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET
from tests.factories import create_user, fund
from tests.helpers import TEST_JWT_SECRET, auth, make_event, make_token, stripe_signature

WEBHOOKS = {
    "/api/v1/webhooks/stripe": TEST_WEBHOOK_SECRET,
    "/api/v1/webhooks/stripe/connect": TEST_CONNECT_WEBHOOK_SECRET,
}


async def _counts(session: AsyncSession) -> tuple[int, ...]:
    out = []
    for model in (User, Order, Escrow, LedgerTransaction, WebhookEvent):
        out.append(int(await session.scalar(select(func.count()).select_from(model)) or 0))
    return tuple(out)


def _problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def _raw_json(template: dict[str, Any], field: str, raw: str) -> bytes:
    """``template`` as JSON with ``field``'s string value replaced by raw JSON text, so
    escapes such as a lone ``\\ud800`` reach the service exactly as a client sent them."""
    marker = "__RAW__"
    text = json.dumps({**template, field: marker})
    return text.replace(f'"{marker}"', raw).encode()


class TestBodyStrings:
    @pytest.mark.parametrize(
        "raw",
        ['"job\\u0000one"', '"\\ud800"', '"tail \\udfff"'],
        ids=["nul", "lone-high-surrogate", "lone-low-surrogate"],
    )
    async def test_refused_before_anything_is_stored(
        self, client: httpx.AsyncClient, session: AsyncSession, raw: str
    ) -> None:
        customer = await create_user(session, id=f"hb-{uuid.uuid4().hex[:8]}")
        await create_user(session, id="hb-payee", roles=["payee"])
        await fund(session, customer.id, 50_000)
        before = await _counts(session)
        body = _raw_json(
            {"payee_id": "hb-payee", "amount": 1_000, "currency": "usd"}, "reference", raw
        )
        response = await client.post(
            "/api/v1/escrows",
            content=body,
            headers={
                **auth(customer.id, ["customer"]),
                "Idempotency-Key": uuid.uuid4().hex,
                "Content-Type": "application/json",
            },
        )
        _problem(response, 400, "invalid_characters")
        assert await _counts(session) == before

    async def test_a_surrogate_pair_is_an_ordinary_character(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer = await create_user(session, id=f"hb-ok-{uuid.uuid4().hex[:8]}")
        await create_user(session, id="hb-payee2", roles=["payee"])
        await fund(session, customer.id, 50_000)
        body = _raw_json(
            {"payee_id": "hb-payee2", "amount": 1_000, "currency": "usd"},
            "reference",
            '"job \\ud83d\\ude00"',
        )
        response = await client.post(
            "/api/v1/escrows",
            content=body,
            headers={
                **auth(customer.id, ["customer"]),
                "Idempotency-Key": uuid.uuid4().hex,
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()["reference"] == "job \U0001f600"


def _signed_jwt(claims: dict[str, Any]) -> str:
    """An HS256 JWT built by hand: the payload is JSON with ASCII escapes, so claims
    holding NUL or a lone surrogate arrive exactly as a hostile issuer would send them."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims, ensure_ascii=True).encode())
    signature = hmac.new(
        TEST_JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256
    ).digest()
    return f"{header}.{payload}.{b64(signature)}"


class TestPathQueryAndCursor:
    @pytest.mark.parametrize(
        "url",
        [
            "/api/v1/escrows/esc_1%00",
            "/api/v1/orders?starting_after=ord_1%00",
            "/api/v1/me/ledger?type=topup%00",
        ],
        ids=["path", "cursor", "query"],
    )
    async def test_nul_is_refused(self, client: httpx.AsyncClient, url: str) -> None:
        response = await client.get(url, headers=auth("hq-user"))
        _problem(response, 400, "invalid_characters")

    @pytest.mark.parametrize(
        "digits",
        ["²", "١", "𝟙"],  # noqa: RUF001 - Unicode digits on purpose
        ids=["superscript", "arabic", "math"],
    )
    async def test_non_ascii_digits_in_an_id_are_not_found(
        self, client: httpx.AsyncClient, digits: str
    ) -> None:
        response = await client.get(f"/api/v1/escrows/esc_{digits}", headers=auth("hq-user"))
        _problem(response, 404, "escrow_not_found")

    @pytest.mark.parametrize(
        "digits",
        ["²", "١"],  # noqa: RUF001 - Unicode digits on purpose
        ids=["superscript", "arabic"],
    )
    async def test_non_ascii_digits_in_a_cursor_are_refused(
        self, client: httpx.AsyncClient, digits: str
    ) -> None:
        response = await client.get(
            f"/api/v1/orders?starting_after=ord_{digits}", headers=auth("hq-user")
        )
        _problem(response, 422, "invalid_cursor")


class TestRedirectUrls:
    async def test_a_port_that_is_not_a_number(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        before = await _counts(session)
        response = await client.post(
            "/api/v1/checkout/sessions",
            json={
                "purpose": "topup",
                "amount": 2_000,
                "currency": "usd",
                "success_url": "http://localhost:abc/ok",
                "cancel_url": "http://localhost:3000/no",
            },
            headers={**auth("hr-user"), "Idempotency-Key": uuid.uuid4().hex},
        )
        _problem(response, 422, "redirect_url_not_allowed")
        assert await _counts(session) == before


class TestJwtClaims:
    @pytest.mark.parametrize(
        "claims",
        [
            {"sub": "evil\x00user"},
            {"sub": "ok", "email": "a@b.c\x00"},
            {"sub": "ok", "email": "x" * 400 + "@example.com"},
            {"sub": "\ud800"},
        ],
        ids=["nul-sub", "nul-email", "long-email", "surrogate-sub"],
    )
    async def test_unusable_claims_are_invalid_tokens(
        self, client: httpx.AsyncClient, session: AsyncSession, claims: dict[str, Any]
    ) -> None:
        before = await _counts(session)
        now = int(time.time())
        token = _signed_jwt({"roles": ["customer"], "iat": now, "exp": now + 600, **claims})
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        _problem(response, 401, "invalid_token")
        assert await _counts(session) == before

    @pytest.mark.parametrize(
        "overrides",
        [
            {"exp": str(int(time.time()) + 600)},
            {"iat": int(time.time()) + 3600},
        ],
        ids=["exp-as-string", "iat-in-the-future"],
    )
    async def test_bad_numeric_dates(
        self, client: httpx.AsyncClient, overrides: dict[str, Any]
    ) -> None:
        token = make_token("hj-user", **overrides)
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        _problem(response, 401, "invalid_token")

    async def test_a_token_over_8_kib(self, client: httpx.AsyncClient) -> None:
        token = make_token("hj-big", padding="x" * 9000)
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        _problem(response, 401, "invalid_token")


class TestWebhooks:
    @pytest.mark.parametrize("path", list(WEBHOOKS))
    @pytest.mark.parametrize(
        "header",
        ["t=99999999999999999999999,v1=00", "t=١٢٣,v1=00", "t=" + "9" * 5000],
        ids=["huge-timestamp", "arabic-digits", "huge-header"],
    )
    async def test_a_crafted_signature_header_is_a_400(
        self, client: httpx.AsyncClient, session: AsyncSession, path: str, header: str
    ) -> None:
        before = await _counts(session)
        response = await client.post(
            path,
            content=b"{}",
            headers=[
                (b"Stripe-Signature", header.encode()),
                (b"Content-Type", b"application/json"),
            ],
        )
        _problem(response, 400, "webhook_signature_invalid")
        assert await _counts(session) == before

    @pytest.mark.parametrize(
        "change",
        [
            {"id": "evt_" + "a" * 300},
            {"type": "x" * 200},
            {"created": 10**15},
            {"created": -1},
            {"account": "acct_\x00"},
            {"data": {"object": {"id": "pi_1", "description": "\x00"}}},
        ],
        ids=["long-id", "long-type", "absurd-created", "negative-created", "nul-account", "nul"],
    )
    async def test_a_signed_event_the_inbox_cannot_hold_is_a_400(
        self, client: httpx.AsyncClient, session: AsyncSession, change: dict[str, Any]
    ) -> None:
        before = await _counts(session)
        event = {**make_event("payment_intent.succeeded", {"id": "pi_1"}), **change}
        body = json.dumps(event).encode()
        response = await client.post(
            "/api/v1/webhooks/stripe",
            content=body,
            headers={
                "Stripe-Signature": stripe_signature(body, TEST_WEBHOOK_SECRET),
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 400, response.text
        assert response.json()["code"] in {"webhook_payload_invalid", "invalid_characters"}
        assert await _counts(session) == before


class TestCursorsAndLogs:
    async def test_an_empty_cursor_is_the_first_page(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/api/v1/orders", headers=auth("hc-user"))
        empty = await client.get("/api/v1/orders?starting_after=", headers=auth("hc-user"))
        assert empty.status_code == 200, empty.text
        assert empty.json() == first.json()

    async def test_sql_errors_never_carry_parameters(
        self, settings: Any, database_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A failing statement's traceback, as the service logs it (structlog and the
        standard library alike), names the statement, never the user data bound to it,
        although asyncpg quotes the value in its own message."""
        import logging

        import structlog
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        from payments_api.db import create_engine
        from payments_api.logs import configure_logging

        engine = create_engine(database_url, settings)
        try:
            async with engine.connect() as connection:
                with pytest.raises(DBAPIError) as failed:
                    await connection.execute(
                        text("SELECT CAST(:reference AS integer)"),
                        {"reference": "secret-reference-4711"},
                    )
        finally:
            await engine.dispose()
        assert "secret-reference-4711" in repr(failed.value.orig)  # what would leak
        root = logging.getLogger()
        saved = (root.handlers[:], root.level)
        saved_structlog = structlog.get_config()
        try:
            configure_logging("INFO")
            capsys.readouterr()
            try:
                raise RuntimeError("the route failed") from failed.value
            except RuntimeError:
                structlog.get_logger("payments_api.http").exception("unhandled error")
                logging.getLogger("payments_api.jobs").exception("job failed")
            logged = capsys.readouterr().err
        finally:
            root.handlers[:], root.level = saved
            structlog.configure(**saved_structlog)
        lines = [json.loads(line) for line in logged.splitlines()]
        assert [line["event"] for line in lines] == ["unhandled error", "job failed"]
        for line in lines:
            assert "SELECT CAST($1 AS integer)" in line["exception"]
            assert "RuntimeError: the route failed" in line["exception"]
            assert "secret-reference-4711" not in line["exception"]
