"""What the fault matrix's cells over the sandbox share (issue #17): the faults and the
phases, the problem a failed try must answer, and a flow the service recovers on its
own (a job asks Stripe again, Stripe delivers a webhook again) rather than the client.

Phases: ``first_try`` (the first call fails; the next one succeeds) and ``retry`` (the
first call takes effect at Stripe but its answer is lost: a timeout after the fact, or
for 400 a connection error before it, as Stripe never answers a request it executed
with a 400 later; the retry hits the fault, the next retry succeeds).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import ClassVar

import httpx

from payments_api.state import AppState
from tests.faults.fault_injector import LEAK_MARKER, FaultInjector, FaultKind, Recorded
from tests.sandbox.helpers import Sandbox

TRANSIENT = {
    FaultKind.timeout,
    FaultKind.connection_error,
    FaultKind.server_error,
    FaultKind.rate_limited,
}
FAULTS = list(FaultKind)
FAULT_IDS = [f.name for f in FAULTS]
PHASES = ["first_try", "retry"]


def assert_problem(response: httpx.Response, fault: FaultKind) -> None:
    """A failed try is a clear problem and never echoes Stripe."""
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


async def fault_then_recovery(
    faulty: FaultInjector,
    path: str,
    fault: FaultKind,
    phase: str,
    attempt: Callable[[FaultKind | None], Awaitable[None]],
    *,
    verb: str = "POST",
    refusal_is_final: bool = True,
    keys: int = 1,
) -> list[Recorded]:
    """A flow recovered by its own retries: in the ``retry`` phase a first try whose
    answer is lost, then ``fault``, then the success (unless Stripe refused and
    ``refusal_is_final``). The tries that reached ``verb`` ``path``; they carried
    ``keys`` distinct Idempotency-Keys (none at all for 0: a read)."""
    refused = fault is FaultKind.invalid_request
    definite = refused and refusal_is_final
    if phase == "retry":
        lost = FaultKind.connection_error if refused else FaultKind.timeout
        faulty.fail(verb, path, lost, after_effect=lost is FaultKind.timeout)
        await attempt(lost)
    faulty.fail(verb, path, fault)
    await attempt(fault)
    assert faulty.faults == [], "the fault was not reached"
    if not definite:
        await attempt(None)

    calls = faulty.calls(verb, path)
    tries = (2 if phase == "retry" else 1) + (0 if definite else 1)
    assert len(calls) == tries, [c.outcome for c in calls]
    sent = {c.idempotency_key for c in calls}
    if keys == 0:
        assert sent == {None}, sent
    else:
        assert None not in sent
        assert len(sent) == keys, sent
    return calls


class RecoveredFlow(ABC):
    """A matrix row whose failed Stripe call never reaches the client as a problem: the
    service asks again on its own. One instance per cell: ``prepare``, then
    :func:`fault_then_recovery` drives ``attempt``, then ``settled``."""

    gateway_method: ClassVar[str]
    verb: ClassVar[str]
    stripe_path: ClassVar[str]
    form: ClassVar[dict[str, str]] = {}
    """Parameters every try must carry (a subset of what was sent)."""

    def __init__(self, sandbox: Sandbox, state: AppState, faulty: FaultInjector) -> None:
        self.sandbox = sandbox
        self.state = state
        self.faulty = faulty

    @abstractmethod
    async def prepare(self) -> None:
        """Everything before the call under test (its own Stripe calls are forgotten)."""

    @abstractmethod
    async def attempt(self, fault: FaultKind | None) -> None:
        """One try (the first is the client's request, later ones the recovery), and
        its outcome: what the service shows after ``fault``, or after a success."""

    @abstractmethod
    async def settled(self) -> None:
        """The end state: the money booked once, exactly one Stripe object."""

    def keys(self, fault: FaultKind) -> int:
        """How many Idempotency-Keys the tries carry among them."""
        return 0 if self.verb == "GET" else 1
