"""Schema fuzzing with schemathesis against the app, on the real test database.

Every operation of the app's own OpenAPI document is fuzzed (so routes added later are
fuzzed too): schemathesis generates requests from the spec — valid ones (positive),
invalid ones (negative) and the spec's own examples — and each is sent as every role
(anonymous, customer, payee, admin) to the app over ASGI, in sandbox mode: its Stripe calls are
answered by the sandbox (the one stateful Stripe stand-in). Each response must:

- not be a 5xx, and carry no stack trace, no Stripe secret, no webhook secret;
- conform to the declared status codes, content type, headers and schema;
- reject invalid input with a 4xx;
- change no balance unless it is a 2xx to a money-moving operation (one that takes an
  ``Idempotency-Key``) — checked after every request;

and the ledger invariants hold at the end. Bounded: a few examples per operation and
mode (``PAYMENTS_FUZZ_EXAMPLES`` raises it locally), deterministic (derandomized) so CI
is reproducible; it takes well under a minute on 2 cores.

A second test sends hostile strings (NUL, lone surrogates, Unicode digits, over-long
and control text) into one string slot at a time -- body field, query or path
parameter -- of every operation, for a budget of time (``PAYMENTS_FUZZ_SECONDS``: 150 s
with ``CI=true``, 15 s otherwise), from a fresh random seed each run (printed on
failure): no 5xx, nothing outside the declared responses, no leak, and the ledger
invariants hold afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.settings import Settings
from tests.conftest import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET
from tests.factories import create_user, fund, ledger_invariants
from tests.helpers import make_event, make_token, signed_webhook, stripe_signature
from tests.sandbox.helpers import Sandbox

EXAMPLES = int(os.environ.get("PAYMENTS_FUZZ_EXAMPLES", "3"))
ROLES: dict[str, list[str] | None] = {
    "anonymous": None,
    "customer": ["customer"],
    "payee": ["payee"],
    "admin": ["admin"],
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Never in a response: stack traces, Stripe keys or error text, webhook secrets.
FORBIDDEN_IN_RESPONSES = (
    "Traceback (most recent call last)",
    'File "/',
    "sk_test_",
    "sk_live_",
    "rk_live_",
    "whsec_",
)
WEBHOOK_SECRETS = {
    "/api/v1/webhooks/stripe": TEST_WEBHOOK_SECRET,
    "/api/v1/webhooks/stripe/connect": TEST_CONNECT_WEBHOOK_SECRET,
}
UNSAFE_HEADERS = {"connection", "accept-encoding", "content-length", "host"}


@pytest.fixture
def sandbox_settings(sandbox_settings: Settings) -> Settings:
    """The sandbox app, also accepting the fuzzed webhooks signed with the test secrets."""
    return sandbox_settings.model_copy(
        update={
            "stripe_webhook_secrets": [SecretStr(TEST_WEBHOOK_SECRET)],
            "stripe_connect_webhook_secrets": [SecretStr(TEST_CONNECT_WEBHOOK_SECRET)],
        }
    )


@dataclass
class World:
    """Users and resources that exist, so fuzzed ids sometimes hit real rows."""

    run: str
    customer: str
    payee: str
    admin: str
    known: dict[str, list[str]]

    def token(self, role: str) -> str | None:
        roles = ROLES[role]
        if roles is None:
            return None
        sub = {"customer": self.customer, "payee": self.payee, "admin": self.admin}[role]
        return f"Bearer {make_token(sub, roles)}"


def collect_cases(strategy: Any, count: int) -> list[Case[Any]]:
    """``count`` cases drawn from a schemathesis strategy (generation only: the
    requests are sent afterwards on the test's own event loop)."""
    cases: list[Case[Any]] = []

    @hypothesis_settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def draw(case: Case[Any]) -> None:
        if len(cases) < count:
            cases.append(case)

    # Unsatisfiable: e.g. no invalid request exists for an operation without inputs.
    with contextlib.suppress(Unsatisfiable):
        draw()
    return cases


def operation_cases(schema: Any, operation: Any) -> list[tuple[str, Case[Any]]]:
    cases = [
        ("example", c)
        for s in schema.get_strategies_from_examples(operation)
        for c in collect_cases(s, 1)
    ]
    cases += [
        ("positive", c)
        for c in collect_cases(operation.as_strategy(GenerationMode.POSITIVE), EXAMPLES)
    ]
    cases += [
        ("negative", c)
        for c in collect_cases(operation.as_strategy(GenerationMode.NEGATIVE), EXAMPLES)
    ]
    return cases


def roles_for(kind: str, index: int) -> list[str]:
    """Every operation's first cases go out as every role (and anonymous); the rest
    take turns, which keeps the run short without losing a role."""
    names = list(ROLES)
    if kind == "negative":
        return [("customer", "admin")[index % 2]]
    if index < 2:
        return names
    return [names[index % len(names)], names[(index + 1) % len(names)]]


def negated(case: Case[Any], location: ParameterLocation) -> bool:
    meta = case.meta
    if meta is None:
        return False
    component = meta.components.get(location)
    return component is not None and component.mode == GenerationMode.NEGATIVE


def substitute(value: Any, world: World, pick: Callable[[list[str]], str]) -> Any:
    """Top-level fields named like a known resource get a real id of that resource."""
    if isinstance(value, dict):
        return {k: pick(world.known[k]) if k in world.known else v for k, v in value.items()}
    return value


def request_for(case: Case[Any], kind: str, role: str, world: World, turn: int) -> dict[str, Any]:
    """What to send: the generated request, authenticated as ``role``, with real ids in
    every other valid request, a fresh Idempotency-Key on valid ones, and webhook
    bodies signed (so they pass verification and reach the parser)."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    headers = {k: v for k, v in kwargs["headers"].items() if k.lower() not in UNSAFE_HEADERS}
    valid = kind != "negative"
    if valid or not negated(case, ParameterLocation.HEADER):
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        token = world.token(role)
        if token is not None:
            headers["Authorization"] = token
    if valid and any(k.lower() == "idempotency-key" for k in headers):
        headers = {k: v for k, v in headers.items() if k.lower() != "idempotency-key"}
        headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4().hex}"
    url = kwargs["url"]
    params = kwargs.get("params") or {}
    body: bytes | None = None
    if "json" in kwargs:
        payload = kwargs["json"]
        if valid and turn % 2 == 0:
            payload = substitute(payload, world, lambda values: values[turn % len(values)])
        body = json.dumps(payload).encode()
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body = data if isinstance(data, bytes) else str(data).encode()
    if valid and turn % 2 == 0:
        path_values = {
            name: world.known[name][turn % len(world.known[name])]
            for name in (case.path_parameters or {})
            if name in world.known
        }
        if path_values:
            values = {**(case.path_parameters or {}), **path_values}
            url = "http://testserver" + case.operation.path.format(
                **{name: quote(str(value), safe="") for name, value in values.items()}
            )
        params = substitute(params, world, lambda values: values[turn % len(values)])
    secret = WEBHOOK_SECRETS.get(case.operation.path)
    if secret is not None and valid and body is not None:
        headers["Stripe-Signature"] = stripe_signature(body, secret)
    return {
        "method": kwargs["method"],
        "url": url,
        "params": params,
        "headers": headers,
        "content": body,
    }


async def ledger_fingerprint(session: AsyncSession) -> tuple[int, int, int]:
    row = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM ledger_transactions),"
                " (SELECT count(*) FROM ledger_balances),"
                " (SELECT coalesce(sum(abs(balance)), 0) FROM ledger_balances)"
            )
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def build_world(sandbox: Sandbox, session: AsyncSession) -> World:
    client = sandbox.client
    run = uuid.uuid4().hex[:8]
    customer = (await create_user(session, id=f"fz_cust_{run}", roles=["customer"])).id
    payee = (await create_user(session, id=f"fz_payee_{run}", roles=["payee"])).id
    admin = (await create_user(session, id=f"fz_admin_{run}", roles=["admin"])).id
    await fund(session, customer, 1_000_000, "usd")
    await fund(session, payee, 100_000, "usd")
    await session.commit()

    def as_(sub: str, roles: list[str]) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {make_token(sub, roles)}",
            "Idempotency-Key": f"seed-{uuid.uuid4().hex}",
        }

    await sandbox.onboard(payee)
    escrow = await client.post(
        "/api/v1/escrows",
        json={"payee_id": payee, "amount": 10_000, "currency": "usd", "reference": "fuzz"},
        headers=as_(customer, ["customer"]),
    )
    assert escrow.status_code == 201, escrow.text
    topup = await client.post(
        "/api/v1/topups",
        json={"amount": 5_000, "currency": "usd"},
        headers=as_(customer, ["customer"]),
    )
    assert topup.status_code == 201, topup.text
    price = await client.post(
        "/api/v1/admin/prices",
        json={"lookup_key": f"fz-{run}", "name": "Fuzz", "unit_amount": 1_500, "currency": "usd"},
        headers=as_(admin, ["admin"]),
    )
    assert price.status_code == 201, price.text
    project = await client.post(
        "/api/v1/me/projects",
        json={"name": "Fuzz stall", "currency": "usd"},
        headers=as_(payee, ["payee"]),
    )
    assert project.status_code == 201, project.text
    project_session = await client.post(
        f"/api/v1/me/projects/{project.json()['id']}/sessions",
        json={"title": "Fuzz show"},
        headers=as_(payee, ["payee"]),
    )
    assert project_session.status_code == 201, project_session.text
    event = make_event("customer.created", {"id": "cus_fuzz", "object": "customer"})
    body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
    stored = await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)
    assert stored.status_code == 200, stored.text
    return World(
        run=run,
        customer=customer,
        payee=payee,
        admin=admin,
        known={
            "user_id": [payee, customer],
            "payee_id": [payee],
            "escrow_id": [escrow.json()["id"]],
            "order_id": [topup.json()["order_id"]],
            "event_id": [event["id"]],
            "lookup_key": [f"fz-{run}"],
            "price": [f"fz-{run}"],
            "currency": ["usd"],
            "projectId": [project.json()["id"]],
            "project_id": [project.json()["id"]],
            "sessionId": [project_session.json()["id"]],
        },
    )


class TestSchemathesis:
    async def test_every_operation_as_every_role(
        self,
        sandbox: Sandbox,
        session: AsyncSession,
    ) -> None:
        client = sandbox.client
        spec = (await client.get("/openapi.json")).json()
        schema = schemathesis.openapi.from_dict(spec)
        results = list(schema.get_all_operations())
        assert [r for r in results if not isinstance(r, Ok)] == []  # the spec loads whole
        operations = [r.ok() for r in results if isinstance(r, Ok)]
        assert len(operations) >= 30
        world = await build_world(sandbox, session)
        failures: list[str] = []
        details: list[str] = []
        statuses: dict[str, list[int]] = {}
        moved_money = 0
        sent: dict[str, int] = {}
        turns = itertools.count()
        for operation in operations:
            money_moving = any(
                p.get("name", "").lower() == "idempotency-key"
                for p in operation.definition.raw.get("parameters", [])
            ) or operation.path.startswith("/api/v1/webhooks/")
            for index, (kind, case) in enumerate(operation_cases(schema, operation)):
                for role in roles_for(kind, index):
                    turn = next(turns)
                    request = request_for(case, kind, role, world, turn)
                    before = await ledger_fingerprint(session)
                    response = await client.request(**request)
                    after = await ledger_fingerprint(session)
                    sent[operation.label] = sent.get(operation.label, 0) + 1
                    statuses.setdefault(operation.label, []).append(response.status_code)
                    label = f"{operation.label} [{kind}, {role}] -> {response.status_code}"
                    checks = [*CHECKS, negative_data_rejection] if kind == "negative" else CHECKS
                    try:
                        case.validate_response(response, checks=checks)
                    except FailureGroup as group:
                        failures += [
                            f"{label}: {f.title}\n  {f.message[:300]}" for f in group.exceptions
                        ]
                        details.append(f"{label}\n{request}")
                    leaked = [s for s in FORBIDDEN_IN_RESPONSES if s in response.text]
                    if leaked:
                        failures.append(f"{label}: response contains {leaked}")
                    if before != after:
                        moved_money += 1
                        if not (money_moving and response.is_success):
                            failures.append(f"{label}: the ledger changed {before} -> {after}")
        summary = sorted(set(failures))
        assert summary == [], "\n".join(summary) + "\n\nFirst requests:\n" + "\n".join(details[:5])
        assert set(sent) == {op.label for op in operations}
        # Not vacuous: valid requests got through, and some of them moved money.
        answered = [label for label, codes in statuses.items() if any(c < 300 for c in codes)]
        assert len(answered) >= len(statuses) // 2
        assert moved_money > 0
        assert await ledger_invariants(session) == []


# Strings that broke the service before (issue 15): NUL, lone surrogates, Unicode digits
# (some alias real ids), over-long text, control and bidi characters.
HOSTILE_STRINGS = (
    "\x00",
    "ref\x00erence",
    "\ud800",
    "tail\udfff",
    "²",
    "١٢٣",
    "𝟙𝟚",  # noqa: RUF001 - mathematical digits on purpose
    "esc_²",
    "ord_١",  # noqa: RUF001
    "prj_𝟙",  # noqa: RUF001
    "9" * 400,
    "\u202egnp.exe",
    "\x1b[31m",
    "",
)
# A budget of time, not of examples: a few minutes in CI, seconds on a laptop.
HOSTILE_SECONDS = float(
    os.environ.get("PAYMENTS_FUZZ_SECONDS", "150" if os.environ.get("CI") == "true" else "15")
)


def _string_slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every string (and every key) in a JSON value."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _string_slots(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _string_slots(v, (*path, i))]
    return []


def _replaced(value: Any, path: tuple[Any, ...], new: str) -> Any:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {k: _replaced(v, tuple(rest), new) if k == head else v for k, v in value.items()}
    return [_replaced(v, tuple(rest), new) if i == head else v for i, v in enumerate(value)]


def _quote(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def hostile_request(
    case: Case[Any], world: World, role: str, rng: random.Random
) -> tuple[str, dict[str, Any]]:
    """A valid request of ``case`` with one string slot -- a body field, a query or a
    path parameter -- replaced by a hostile string; returns what was replaced."""
    request = request_for(case, "positive", role, world, 0)
    value = rng.choice(HOSTILE_STRINGS)
    body = json.loads(request["content"]) if request["content"] else None
    slots: list[tuple[str, Any]] = [("body", p) for p in _string_slots(body) if p]
    slots += [("query", name) for name in request["params"]]
    slots += [("path", name) for name in (case.path_parameters or {})]
    if not slots:
        return "nothing", request
    where, slot = rng.choice(slots)
    if where == "path" and not value:
        value = "\x00"  # an empty segment is another URL (a redirect), not this route
    if where == "body":
        raw = json.dumps(_replaced(body, slot, value)).encode()  # escapes surrogates
        request["content"] = raw
        secret = WEBHOOK_SECRETS.get(case.operation.path)
        if secret is not None:
            request["headers"]["Stripe-Signature"] = stripe_signature(raw, secret)
    elif where == "query":
        params = {**request["params"], slot: value}
        request["params"] = {}
        query = "&".join(f"{_quote(str(k))}={_quote(str(v))}" for k, v in params.items())
        request["url"] = request["url"].split("?")[0] + "?" + query
    else:
        values = {**(case.path_parameters or {}), slot: value}
        request["url"] = "http://testserver" + case.operation.path.format(
            **{name: _quote(str(v)) for name, v in values.items()}
        )
    return f"{where} {slot!r} = {value!r}", request


class TestHostileStrings:
    async def test_no_hostile_string_anywhere_reaches_a_server_error(
        self,
        sandbox: Sandbox,
        session: AsyncSession,
    ) -> None:
        client = sandbox.client
        spec = (await client.get("/openapi.json")).json()
        schema = schemathesis.openapi.from_dict(spec)
        operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
        world = await build_world(sandbox, session)
        seed = random.SystemRandom().randrange(2**32)
        rng = random.Random(seed)
        bases = {
            op.label: collect_cases(op.as_strategy(GenerationMode.POSITIVE), 2) for op in operations
        }
        failures: list[str] = []
        sent = 0
        deadline = time.monotonic() + HOSTILE_SECONDS
        while time.monotonic() < deadline or sent < len(operations):
            operation = operations[sent % len(operations)]
            cases = bases[operation.label]
            if not cases:
                sent += 1
                continue
            case = rng.choice(cases)
            role = rng.choice(list(ROLES))
            what, request = hostile_request(case, world, role, rng)
            response = await client.request(**request)
            sent += 1
            label = f"{operation.label} [{role}] {what} -> {response.status_code}"
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:
                failures += [f"{label}: {f.title}" for f in group.exceptions]
            leaked = [s for s in FORBIDDEN_IN_RESPONSES if s in response.text]
            if leaked:
                failures.append(f"{label}: response contains {leaked}")
        assert sorted(set(failures)) == [], f"seed {seed}:\n" + "\n".join(sorted(set(failures)))
        assert sent >= len(operations)
        # No hostile request left the ledger inconsistent.
        assert await ledger_invariants(session) == []
