from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from tests.faults.fake_stripe import FakeStripe


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    """A stateful Stripe behind respx: every outgoing Stripe call of the app reaches it.
    Only the fault matrix still uses it (issue #17: to run over the sandbox, with faults
    injected by respx)."""
    fake = FakeStripe()
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        yield fake
