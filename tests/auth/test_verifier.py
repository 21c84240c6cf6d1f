"""TokenVerifier remembers verified tokens until they expire, and nothing else."""

from __future__ import annotations

import time

import pytest

from payments_api.auth import InvalidToken, TokenVerifier
from payments_api.settings import Settings
from tests.helpers import make_token


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class TestVerifiedTokenCache:
    def test_a_remembered_token_is_served_until_exp_plus_leeway(self, settings: Settings) -> None:
        clock = Clock()
        verifier = TokenVerifier(settings, clock=clock)
        token = make_token("cache-exp", ttl=60)
        assert verifier.verify(token).sub == "cache-exp"
        clock.now += 60 + settings.jwt_leeway_seconds - 1
        assert verifier.verify(token).sub == "cache-exp"  # from the cache
        clock.now += 2
        assert verifier.verify(token).sub == "cache-exp"  # let go, verified afresh
        assert verifier._verified[token][1] == pytest.approx(
            time.time() + 60 + settings.jwt_leeway_seconds, abs=5
        )

    def test_a_remembered_token_is_refused_once_it_expires(self, settings: Settings) -> None:
        verifier = TokenVerifier(settings)
        # Valid for one to two more seconds, counting the leeway (python-jose compares
        # whole seconds, so a token is accepted through the second after exp + leeway).
        token = make_token("cache-late", ttl=1 - settings.jwt_leeway_seconds)
        assert verifier.verify(token).sub == "cache-late"
        time.sleep(2.1)
        with pytest.raises(InvalidToken):
            verifier.verify(token)

    def test_a_tampered_copy_of_a_remembered_token_is_still_refused(
        self, settings: Settings
    ) -> None:
        verifier = TokenVerifier(settings)
        token = make_token("cache-sig")
        verifier.verify(token)
        header, payload, signature = token.split(".")
        # The first character: the last one partly encodes padding bits that decoding drops.
        forged = f"{header}.{payload}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
        with pytest.raises(InvalidToken):
            verifier.verify(forged)

    def test_refused_tokens_are_not_remembered(self, settings: Settings) -> None:
        verifier = TokenVerifier(settings)
        bad = make_token("cache-bad", secret="not-the-configured-secret-000000000000")
        for _ in range(2):
            with pytest.raises(InvalidToken):
                verifier.verify(bad)
        assert bad not in verifier._verified

    def test_the_cache_is_bounded(self, settings: Settings) -> None:
        verifier = TokenVerifier(settings)
        verifier.CACHE_SIZE = 3
        tokens = [make_token(f"cache-{i}") for i in range(5)]
        for token in tokens:
            verifier.verify(token)
        assert list(verifier._verified) == tokens[2:]
        assert verifier.verify(tokens[0]).sub == "cache-0"  # verified again, from scratch
