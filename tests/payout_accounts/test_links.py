"""The signed state of the onboarding refresh/return URLs."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from payments_api.auth import mint_dev_token
from payments_api.payout_accounts.errors import InvalidLinkState
from payments_api.payout_accounts.links import LinkState, landing_urls, sign_state, verify_state
from payments_api.settings import Settings

STATE = LinkState(user_id="payee_1", stripe_account_id="acct_1")


class TestLinkState:
    def test_round_trip(self, settings: Settings) -> None:
        assert verify_state(settings, sign_state(settings, STATE)) == STATE

    def test_expired(self, settings: Settings) -> None:
        issued = int(time.time()) - settings.connect_link_state_ttl_seconds - 1
        with pytest.raises(InvalidLinkState):
            verify_state(settings, sign_state(settings, STATE, now=issued))

    def test_signed_with_another_key(self, settings: Settings) -> None:
        other = settings.model_copy(update={"connect_link_state_secret": SecretStr("x" * 40)})
        with pytest.raises(InvalidLinkState):
            verify_state(settings, sign_state(other, STATE))

    def test_an_api_token_is_not_a_link_state(self, settings: Settings) -> None:
        token = mint_dev_token(settings, sub="payee_1", roles=["payee"])
        with pytest.raises(InvalidLinkState):
            verify_state(settings, token)

    def test_key_changes_with_the_stripe_key(self, settings: Settings) -> None:
        rotated = settings.model_copy(update={"stripe_secret_key": SecretStr("sk_test_999")})
        with pytest.raises(InvalidLinkState):
            verify_state(rotated, sign_state(settings, STATE))

    def test_landing_urls_point_at_the_public_base_url(self, settings: Settings) -> None:
        configured = settings.model_copy(update={"public_base_url": "https://pay.example.com/"})
        refresh, back = landing_urls(configured, STATE)
        assert refresh.startswith(
            "https://pay.example.com/api/v1/payout-account/onboarding/refresh?state="
        )
        assert back.startswith(
            "https://pay.example.com/api/v1/payout-account/onboarding/return?state="
        )
        token = back.split("state=", 1)[1]
        assert verify_state(configured, token) == STATE
