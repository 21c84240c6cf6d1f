"""The fault matrix over the sandbox (issue #17): the sandbox is the stateful Stripe,
``FaultInjector`` (a respx layer in front of it) records what was sent and fails the
planned try. Same cells as tests/faults/test_stripe_faults.py, for the rows moved here
so far (the top-up's Stripe calls); see that module for what a phase means.

Each cell asserts what reached Stripe (path, form parameters, one Idempotency-Key on
every try, no Stripe-Account on platform calls) and the money outcome: exactly one
Stripe object made, one order, ledger invariants hold.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import httpx
import pytest
from sqlalchemy import text

from tests.factories import create_user, ledger_invariants
from tests.faults.fault_injector import LEAK_MARKER, FaultInjector, FaultKind, Forward
from tests.helpers import auth
from tests.sandbox.helpers import Sandbox

TRANSIENT = {
    FaultKind.timeout,
    FaultKind.connection_error,
    FaultKind.server_error,
    FaultKind.rate_limited,
}


@dataclass
class SandboxRow:
    gateway_method: str
    stripe_path: str
    stripe_object: str
    """The sandbox object type the call makes (exactly one must exist at the end)."""
    form: dict[str, object]
    """Form parameters every try must carry (a subset of what was sent)."""


ROWS = [
    SandboxRow("create_customer", "/v1/customers", "customer", {"metadata": {}}),
    SandboxRow(
        "create_payment_intent",
        "/v1/payment_intents",
        "payment_intent",
        {"amount": "5000", "currency": "eur"},
    ),
]
FAULTS = list(FaultKind)
PHASES = ["first_try", "retry"]


@pytest.fixture
async def faulty(sandbox: Sandbox) -> AsyncIterator[FaultInjector]:
    """Every request the app sends to the sandbox's Stripe API passes the injector."""
    route = sandbox.mock.routes["loopback"]
    forward = route.side_effect
    assert callable(forward)  # the sandbox fixture's loopback handler
    injector = FaultInjector(cast("Forward", forward))
    route.side_effect = injector
    yield injector
    route.side_effect = forward


async def topup(sandbox: Sandbox, user: str, key: str) -> httpx.Response:
    return await sandbox.client.post(
        "/api/v1/topups",
        json={"amount": 5_000, "currency": "eur"},
        headers={**auth(user, ["customer"]), "Idempotency-Key": key},
    )


def assert_problem(response: httpx.Response, fault: FaultKind) -> None:
    assert response.headers["content-type"].startswith("application/problem+json")
    if fault in TRANSIENT:
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "payment_provider_unavailable"
        assert int(response.headers["Retry-After"]) > 0
    else:
        assert response.status_code == 502, response.text
        assert response.json()["code"] == "payment_provider_error"
    assert LEAK_MARKER not in response.text
    assert "Invalid integer" not in response.text


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
@pytest.mark.parametrize("row", ROWS, ids=[r.gateway_method for r in ROWS])
async def test_topup_fault(
    sandbox: Sandbox, faulty: FaultInjector, row: SandboxRow, fault: FaultKind, phase: str
) -> None:
    user, key = f"flt_{uuid.uuid4().hex[:10]}", f"idem-{uuid.uuid4().hex}"
    async with sandbox.sessionmaker.begin() as session:
        await create_user(session, id=user, roles=["customer"])
    if phase == "retry":  # the first try took effect at Stripe, its answer was lost
        lost = FaultKind.connection_error
        if fault is not FaultKind.invalid_request:
            lost = FaultKind.timeout
        faulty.fail("POST", row.stripe_path, lost, after_effect=lost is FaultKind.timeout)
        assert_problem(await topup(sandbox, user, key), lost)
    faulty.fail("POST", row.stripe_path, fault)
    assert_problem(await topup(sandbox, user, key), fault)
    assert faulty.faults == [], "the fault was not reached"
    response = await topup(sandbox, user, key)
    assert response.status_code == 201, response.text
    assert response.json()["client_secret"].startswith(response.json()["payment_intent_id"])

    calls = faulty.calls("POST", row.stripe_path)
    assert len(calls) == (3 if phase == "retry" else 2), [c.outcome for c in calls]
    keys = {c.idempotency_key for c in calls}
    assert len(keys) == 1, keys  # every try carried the same Stripe key
    assert None not in keys
    for call in calls:
        assert call.stripe_account is None  # a platform call
        assert {k: call.form.get(k) for k in row.form if k != "metadata"} == {
            k: v for k, v in row.form.items() if k != "metadata"
        }
        assert call.form["metadata"]["user_id"] == user
    made = [
        o
        for o in await sandbox.objects_of(row.stripe_object)
        if o.get("metadata", {}).get("user_id") == user
    ]
    assert len(made) == 1, made  # one Stripe object, whatever the retries
    async with sandbox.sessionmaker() as session:
        orders = await session.scalar(
            text("SELECT count(*) FROM orders WHERE user_id = :u"), {"u": user}
        )
        assert orders == 1
        assert await ledger_invariants(session) == []
