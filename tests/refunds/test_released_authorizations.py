"""Which Refunds only released an authorization (as Stripe recorded them before API
version 2025-03-31.basil) and must not be paid back: told apart from a real refund of
captured money by what Stripe answers (respx), including one of the very same amount."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from payments_api.refunds.released_authorizations import releases_an_authorization
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import Refund, parse_object
from tests.helpers import stripe_object

CHARGE = "ch_partly_captured"


def charge(**fields: Any) -> dict[str, Any]:
    return {**stripe_object("charge"), "id": CHARGE, **fields}


def refund(refund_id: str, amount: int, created: int) -> dict[str, Any]:
    return {
        **stripe_object("refund"),
        "id": refund_id,
        "amount": amount,
        "charge": CHARGE,
        "created": created,
    }


def answer(stripe_mock: respx.MockRouter, charge_body: dict[str, Any], *refunds: Any) -> None:
    stripe_mock.get(f"/v1/charges/{CHARGE}").mock(
        return_value=httpx.Response(200, json=charge_body)
    )
    stripe_mock.get("/v1/refunds", params={"charge": CHARGE}).mock(
        return_value=httpx.Response(
            200,
            json={"object": "list", "data": list(refunds), "has_more": False, "url": "/v1/refunds"},
        )
    )


PARTLY = {"amount": 10_500, "amount_captured": 8_400, "captured": True}
RELEASE = refund("re_release", 2_100, created=1_700_000_000)
REAL_SAME_AMOUNT = refund("re_real", 2_100, created=1_700_000_500)


@pytest.mark.parametrize(
    ("charge_fields", "refunds", "asked", "released"),
    [
        pytest.param(PARTLY, [REAL_SAME_AMOUNT, RELEASE], RELEASE, True, id="the-release"),
        pytest.param(
            PARTLY, [REAL_SAME_AMOUNT, RELEASE], REAL_SAME_AMOUNT, False, id="later-same-amount"
        ),
        pytest.param(
            PARTLY,
            [refund("re_other", 1_000, 1_700_000_000)],
            refund("re_other", 1_000, 1_700_000_000),
            False,
            id="other-amount",
        ),
        pytest.param(
            {"amount": 10_500, "amount_captured": 10_500, "captured": True},
            [refund("re_full", 2_100, 1_700_000_000)],
            refund("re_full", 2_100, 1_700_000_000),
            False,
            id="fully-captured",
        ),
        pytest.param(
            {"amount": 10_500, "amount_captured": 0, "captured": False},
            [refund("re_cancel", 10_500, 1_700_000_000)],
            refund("re_cancel", 10_500, 1_700_000_000),
            True,
            id="never-captured",
        ),
    ],
)
async def test_only_the_release_of_the_uncaptured_rest_is_recognized(
    gateway: StripeGateway,
    stripe_mock: respx.MockRouter,
    charge_fields: dict[str, Any],
    refunds: list[dict[str, Any]],
    asked: dict[str, Any],
    released: bool,
) -> None:
    answer(stripe_mock, charge(**charge_fields), *refunds)

    asked_refund = parse_object(Refund, asked)
    assert await releases_an_authorization(asked_refund, gateway) is released
