"""Security as a client sees it, over every operation of the spec.

- another user's ids on every caller-scoped route -> 404/403, and nothing changes;
- every admin route with customer or payee tokens -> 403;
- every authenticated route with a token of the wrong audience or issuer, expired,
  unsigned or signed with another key -> 401;
- no response carries a client secret of another user (nor, see test_fuzz, a Stripe
  secret or a stack trace).

The owner's resources are made through the API against the sandbox (the one stateful
Stripe stand-in), so their Stripe objects exist as Stripe would hold them.

Path parameters are filled from ``OWNED``: a factory per parameter name that creates
the resource for its owner. A new route with a new path parameter fails
``test_every_path_parameter_has_a_factory`` until one is added.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from jose import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from tests.contract.spec import JSON, Operation, app_spec, operations
from tests.factories import create_user, fund
from tests.helpers import TEST_JWT_SECRET, auth
from tests.sandbox.helpers import Sandbox

SPEC = app_spec()
OPERATIONS = list(operations(SPEC))
ADMIN = [op for op in OPERATIONS if op.path.startswith("/api/v1/admin/")]
SECURED = [op for op in OPERATIONS if op.secured]
# Routes of the platform's backend (role service) that name the user they act on; their
# role check is tested in tests/wallets.
SERVICE = [op for op in OPERATIONS if op.path.startswith("/api/v1/wallets/")]
# Routes scoped to the caller that take a resource id in their path.
OWNED_ROUTES = [op for op in SECURED if op.path_params and op not in ADMIN and op not in SERVICE]
ISSUER, AUDIENCE = "https://auth.example.com/", "payments-api"


@dataclass
class Owner:
    """A user holding one of each resource, and a stranger with the same roles."""

    sandbox: Sandbox
    session: AsyncSession
    user: str = field(default_factory=lambda: f"own_{uuid.uuid4().hex[:10]}")
    stranger: str = field(default_factory=lambda: f"str_{uuid.uuid4().hex[:10]}")
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> httpx.AsyncClient:
        return self.sandbox.client

    def headers(self, user: str | None = None) -> dict[str, str]:
        return {
            **auth(user or self.user, ["customer", "payee"]),
            "Idempotency-Key": uuid.uuid4().hex,
        }

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(path, json=body, headers=self.headers())
        assert response.status_code in (200, 201), response.text
        created: dict[str, Any] = response.json()
        return created


async def own_order(owner: Owner) -> str:
    created = await owner.post("/api/v1/topups", {"amount": 5_000, "currency": "usd"})
    return str(created["order_id"])


async def own_escrow(owner: Owner) -> str:
    payee = await create_user(owner.session, roles=["payee"])
    created = await owner.post(
        "/api/v1/escrows",
        {"payee_id": payee.id, "amount": 1_000, "currency": "usd", "reference": "sec"},
    )
    return str(created["id"])


async def own_project(owner: Owner) -> str:
    created = await owner.post("/api/v1/me/projects", {"name": "Shop", "currency": "usd"})
    return str(created["id"])


async def own_session(owner: Owner) -> str:
    project = owner.ids["projectId"]
    created = await owner.post(f"/api/v1/me/projects/{project}/sessions", {"title": "Show"})
    return str(created["id"])


async def own_payment_method(owner: Owner) -> str:
    """A saved card (as setup_intent.succeeded records it)."""
    from payments_api.payment_methods.models import PaymentMethod

    method = PaymentMethod(
        user_id=owner.user,
        stripe_payment_method_id=f"pm_{uuid.uuid4().hex[:16]}",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2031,
        fingerprint=uuid.uuid4().hex[:16],
        is_default=True,
    )
    owner.session.add(method)
    await owner.session.flush()
    return f"pmt_{method.id}"


async def own_subscription(owner: Owner) -> str:
    """A subscription to a monthly plan made in the sandbox; ``price`` is another price of
    its family (the preview route's required query parameter)."""
    from payments_api.stripe.billing_objects import Price, Product
    from payments_api.stripe.objects import parse_object
    from payments_api.subscriptions.plans import price_values, product_values
    from payments_api.subscriptions.repository import PlanRepository

    async def made(path: str, data: dict[str, str]) -> dict[str, Any]:
        response = await owner.sandbox.stripe("POST", path, data)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    product = await made("/v1/products", {"name": "Security plan"})
    plans = PlanRepository(owner.session)
    await plans.upsert_product(product_values(parse_object(Product, product), 1))
    prices = [
        await made(
            "/v1/prices",
            {
                "product": product["id"],
                "currency": "usd",
                "unit_amount": str(unit_amount),
                "recurring[interval]": "month",
            },
        )
        for unit_amount in (1_900, 2_900)
    ]
    for price in prices:
        values = price_values(parse_object(Price, price), 1)
        assert values is not None
        await plans.upsert_price(values)
    await owner.session.flush()
    owner.ids["price"] = str(prices[1]["id"])
    created = await owner.post("/api/v1/me/subscriptions", {"price": prices[0]["id"]})
    return str(created["id"])


async def own_wallet_refund(owner: Owner) -> str:
    """A cash-out of the owner's wallet (the row; its refunds do not matter here)."""
    from payments_api.orders.refund_models import WalletRefund

    row = WalletRefund(
        user_id=owner.user,
        amount=500,
        currency="usd",
        status="pending",
        refunded_amount=0,
        failed_amount=0,
        idempotency_key=uuid.uuid4().hex,
        request_fingerprint="0" * 64,
    )
    owner.session.add(row)
    await owner.session.flush()
    return f"wrf_{row.id}"


# Path parameter name -> how its owner creates one. Order matters: later factories may
# use earlier ids.
OWNED: dict[str, Callable[[Owner], Awaitable[str]]] = {
    "order_id": own_order,
    "escrow_id": own_escrow,
    "projectId": own_project,
    "sessionId": own_session,
    "payment_method_id": own_payment_method,
    "subscription_id": own_subscription,
    "wallet_refund_id": own_wallet_refund,
}


def url_for(op: Operation, ids: dict[str, str]) -> str:
    """The path with the owner's ids; required query parameters from ``ids`` too."""
    path = op.path.format(**{name: ids.get(name, "x") for name in op.path_params})
    query = [
        f"{p['name']}={ids[p['name']]}"
        for p in op.spec.get("parameters", [])
        if p.get("in") == "query" and p.get("required") and p["name"] in ids
    ]
    return f"{path}?{'&'.join(query)}" if query else path


def body_for(op: Operation) -> bytes | None:
    content = op.spec.get("requestBody", {}).get("content", {})
    if JSON not in content:
        return None
    return json.dumps(content[JSON].get("example", {})).encode()


async def call(
    client: httpx.AsyncClient, op: Operation, ids: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    body = body_for(op)
    if body is not None:
        headers = {**headers, "Content-Type": "application/json"}
    return await client.request(op.method.upper(), url_for(op, ids), content=body, headers=headers)


@pytest.fixture
async def owner(sandbox: Sandbox, session: AsyncSession) -> Owner:
    owner = Owner(sandbox, session)
    await create_user(session, id=owner.user, roles=["customer", "payee"])
    await create_user(session, id=owner.stranger, roles=["customer", "payee"])
    await fund(session, owner.user, 100_000, "usd")
    for name, factory in OWNED.items():
        owner.ids[name] = await factory(owner)
    return owner


def token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": "sec_user",
        "roles": ["customer", "payee", "admin"],
        "iat": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
        **overrides,
    }
    secret = claims.pop("_secret", TEST_JWT_SECRET)
    claims = {k: v for k, v in claims.items() if v is not None}
    encoded: str = jwt.encode(claims, secret, algorithm="HS256")
    return encoded


def unsigned(**claims: Any) -> str:
    """``alg: none``: must never be accepted, whatever the claims."""
    import base64

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    body = {"sub": "sec_user", "roles": ["admin"], "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({**body, **claims})}."


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "wrong_audience": lambda: token(aud="another-api"),
    "no_audience": lambda: token(aud=None),
    "wrong_issuer": lambda: token(iss="https://evil.example.com/"),
    "no_issuer": lambda: token(iss=None),
    "expired": lambda: token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
    "other_key": lambda: token(_secret="another-secret-that-is-long-enough-0123456789"),
    "unsigned": unsigned,
}


# Fields of a GET answer that are the clock's, not the resource's: a proration preview
# is priced at the second it is asked for.
VOLATILE = frozenset({"proration_date"})
# A proration preview prices the unused time as of its proration_date (now): a second
# later its amounts differ, so two reads are compared by what they are a preview of.
PRORATED = frozenset({"amount_due", "lines"})


def stable(response: httpx.Response) -> str:
    """The answer without its clock fields, to compare two reads of one resource."""
    body = response.json()
    if isinstance(body, dict):
        volatile = VOLATILE | PRORATED if "proration_date" in body else VOLATILE
        body = {k: v for k, v in body.items() if k not in volatile}
    return json.dumps(body, sort_keys=True)


class TestOwnership:
    def test_every_path_parameter_has_a_factory(self) -> None:
        missing = {p for op in OWNED_ROUTES for p in op.path_params} - set(OWNED)
        assert missing == set(), "add a factory to OWNED for these path parameters"
        assert len(OWNED_ROUTES) >= 5

    async def test_another_users_ids_are_not_found(self, owner: Owner) -> None:
        before: dict[str, str] = {}
        for op in OWNED_ROUTES:
            if op.method == "get":
                response = await call(owner.client, op, owner.ids, owner.headers())
                assert response.status_code == 200, (op.id, response.text)  # the owner's own
                before[op.id] = stable(response)
        answers: dict[str, int] = {}
        for op in OWNED_ROUTES:
            response = await call(owner.client, op, owner.ids, owner.headers(owner.stranger))
            answers[op.id] = response.status_code
            # Nothing of the owner's comes back (the problem's `instance` is the
            # stranger's own request path).
            shown = {k: v for k, v in response.json().items() if k != "instance"}
            assert [v for v in owner.ids.values() if f'"{v}"' in json.dumps(shown)] == []
        assert {k: v for k, v in answers.items() if v not in (403, 404)} == {}
        # The stranger's writes changed nothing the owner sees.
        for op in OWNED_ROUTES:
            if op.method == "get":
                again = await call(owner.client, op, owner.ids, owner.headers())
                assert stable(again) == before[op.id]


class TestRoles:
    @pytest.mark.parametrize("role", ["customer", "payee"])
    async def test_admin_routes_refuse_other_roles(
        self, client: httpx.AsyncClient, role: str
    ) -> None:
        assert len(ADMIN) >= 5
        answers = {}
        for op in ADMIN:
            response = await call(
                client, op, {}, {**auth(f"sec_{role}", [role]), "Idempotency-Key": uuid.uuid4().hex}
            )
            answers[op.id] = (response.status_code, response.json().get("code"))
        assert {k: v for k, v in answers.items() if v != (403, "forbidden")} == {}


class TestTokens:
    @pytest.mark.parametrize("bad", list(BAD_TOKENS))
    async def test_every_authenticated_route_refuses_a_bad_token(
        self, app_factory: Any, bad: str
    ) -> None:
        app = app_factory(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            good = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token()}"})
            assert good.status_code == 200, good.text  # the configuration itself works
            answers = {}
            for op in SECURED:
                header = {
                    "Authorization": f"Bearer {BAD_TOKENS[bad]()}",
                    "Idempotency-Key": uuid.uuid4().hex,
                }
                response = await call(client, op, {}, header)
                answers[op.id] = response.status_code
                if response.status_code == 401:
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                    assert response.headers["content-type"] == "application/problem+json"
        assert {k: v for k, v in answers.items() if v != 401} == {}


class TestSecrets:
    async def test_no_response_shows_another_users_client_secret(self, owner: Owner) -> None:
        topup = await owner.post("/api/v1/topups", {"amount": 2_000, "currency": "usd"})
        secret = topup["client_secret"]
        assert secret
        reads = [op for op in SECURED if op.method == "get"]
        callers = {
            "stranger": owner.headers(owner.stranger),
            "admin": {**auth(f"adm_{owner.user}", ["admin"])},
            "owner": owner.headers(),
        }
        leaks = []
        for name, headers in callers.items():
            for op in reads:
                response = await call(owner.client, op, owner.ids, headers)
                if secret in response.text or "_secret_" in response.text:
                    leaks.append(f"{name}: {op.id}")
        assert leaks == []
