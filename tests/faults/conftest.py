from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest

from tests.faults.fault_injector import FaultInjector, Forward

# The in-process sandbox (the app in sandbox mode, its Stripe calls looped back into it),
# as tests/sandbox mounts it: the fault matrix's stateful Stripe (issue #17).
from tests.sandbox.conftest import sandbox, sandbox_app, sandbox_gateway, sandbox_settings  # noqa: F401 - fixtures
from tests.sandbox.helpers import Sandbox


@pytest.fixture
async def faulty(sandbox: Sandbox) -> AsyncIterator[FaultInjector]:  # noqa: F811 - the fixture
    """Every request the app sends to the sandbox's Stripe API passes the injector."""
    route = sandbox.mock.routes["loopback"]
    forward = route.side_effect
    assert callable(forward)  # the sandbox fixture's loopback handler
    injector = FaultInjector(cast("Forward", forward))
    route.side_effect = injector
    yield injector
    route.side_effect = forward
