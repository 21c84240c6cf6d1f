"""TokenVerifier remembers verified tokens until they expire, and nothing else."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from payments_api.auth import InvalidToken, Principal, TokenVerifier
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
        expires_at = jwt.get_unverified_claims(token)["exp"]
        assert verifier.verify(token).sub == "cache-exp"
        assert verifier._verified[token][1] == expires_at + settings.jwt_leeway_seconds
        clock.now = expires_at + settings.jwt_leeway_seconds - 1
        assert verifier.verify(token).sub == "cache-exp"  # from the cache
        clock.now += 1
        with pytest.raises(InvalidToken, match="expired"):
            verifier.verify(token)  # let go, and a fresh verification refuses it too

    def test_a_remembered_token_is_refused_once_it_expires(self, settings: Settings) -> None:
        clock = Clock()
        verifier = TokenVerifier(settings, clock=clock)
        token = make_token("cache-late", ttl=60)
        assert verifier.verify(token).sub == "cache-late"
        clock.now += 60 + settings.jwt_leeway_seconds + 1
        with pytest.raises(InvalidToken, match="expired"):
            verifier.verify(token)
        assert token not in verifier._verified

    def test_dates_follow_the_verifiers_clock(self, settings: Settings) -> None:
        """exp, nbf and iat are compared with the injected clock, the one the cache
        uses, so expiry is exact and testable without waiting."""
        clock = Clock()
        leeway = settings.jwt_leeway_seconds
        expired = make_token("dates", ttl=60)
        clock.now += 60 + leeway
        with pytest.raises(InvalidToken, match="expired"):
            TokenVerifier(settings, clock=clock).verify(expired)
        clock.now -= 1
        assert TokenVerifier(settings, clock=clock).verify(expired).sub == "dates"
        not_yet = make_token("dates", nbf=int(clock.now) + leeway + 30, ttl=3_600)
        with pytest.raises(InvalidToken, match="not valid yet"):
            TokenVerifier(settings, clock=clock).verify(not_yet)
        clock.now += 31
        assert TokenVerifier(settings, clock=clock).verify(not_yet).sub == "dates"

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

    def test_the_cache_is_bounded_and_evicts_the_oldest(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        verifier = TokenVerifier(settings)
        monkeypatch.setattr(TokenVerifier, "CACHE_SIZE", 3)
        verified: list[str] = []
        full_verification = verifier._verify

        def counting(token: str) -> tuple[Principal, float]:
            verified.append(token)
            return full_verification(token)

        monkeypatch.setattr(verifier, "_verify", counting)
        tokens = [make_token(f"cache-{i}") for i in range(5)]
        for token in tokens:
            verifier.verify(token)
        assert len(verifier._verified) == 3
        verified.clear()
        # The three newest are served from the cache: no verification at all.
        for token in tokens[2:]:
            assert verifier.verify(token).sub.startswith("cache-")
        assert verified == []
        # The two oldest were evicted: each is verified from scratch again, and
        # remembering it evicts the then-oldest entry.
        assert verifier.verify(tokens[0]).sub == "cache-0"
        assert verified == [tokens[0]]
        assert list(verifier._verified) == [tokens[3], tokens[4], tokens[0]]

    def test_the_cache_is_bounded_by_the_size_of_its_tokens(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Few but large tokens: the character budget evicts before the entry count."""
        verifier = TokenVerifier(settings)
        tokens = [make_token(f"big-{i}", padding="p" * 2_000) for i in range(4)]
        budget = len(tokens[0]) + len(tokens[1]) + len(tokens[2])
        assert all(len(t) == len(tokens[0]) for t in tokens)
        monkeypatch.setattr(TokenVerifier, "CACHE_CHARS", budget)
        for token in tokens[:3]:
            verifier.verify(token)
        assert list(verifier._verified) == tokens[:3]
        verifier.verify(tokens[3])  # one more would exceed the budget: the oldest goes
        assert list(verifier._verified) == tokens[1:]
        assert sum(map(len, verifier._verified)) <= budget
        assert verifier._cached_chars == sum(map(len, verifier._verified))
        # An expired entry dropped on its next use gives its characters back.
        clock = Clock()
        dated = TokenVerifier(settings, clock=clock)
        short = make_token("short-lived", ttl=5)
        dated.verify(short)
        clock.now += 3_600
        with pytest.raises(InvalidToken, match="expired"):
            dated.verify(short)
        assert (dated._verified, dated._cached_chars) == ({}, 0)


class TestTokenSize:
    def test_the_limit_is_8_kib_of_token(self, settings: Settings) -> None:
        from payments_api.auth import MAX_TOKEN_LENGTH

        assert MAX_TOKEN_LENGTH == 8 * 1024
        base = make_token("sized", padding="")
        # A valid token padded to just under the limit is accepted; a larger one is
        # refused before any parsing.
        fits = next(
            t
            for n in range(5_000, 7_000)
            if len(t := make_token("sized", padding="q" * n))
            in range(MAX_TOKEN_LENGTH - 3, MAX_TOKEN_LENGTH + 1)
        )
        assert len(base) < len(fits) <= MAX_TOKEN_LENGTH
        assert TokenVerifier(settings).verify(fits).sub == "sized"
        too_big = make_token("sized", padding="q" * 7_000)
        assert len(too_big) > MAX_TOKEN_LENGTH
        with pytest.raises(InvalidToken, match="too large"):
            TokenVerifier(settings).verify(too_big)


class TestRefusals:
    """Each refusal names its reason, whether the accepted algorithms share one key (the
    token is decoded without reading its header first) or not (the header picks the key)."""

    @pytest.mark.parametrize(
        ("token", "reason"),
        [
            pytest.param("not-a-jwt", "Malformed token.", id="malformed"),
            pytest.param(
                make_token("mallory", algorithm="HS512"),
                "Token algorithm is not accepted.",
                id="algorithm-not-pinned",
            ),
            pytest.param(
                make_token("mallory", secret="another-secret-that-is-long-enough-000000"),
                "Token signature or claims are invalid.",
                id="wrong-key",
            ),
        ],
    )
    @pytest.mark.parametrize("mixed", [False, True], ids=["one-key", "header-picks-key"])
    def test_reasons(
        self, settings: Settings, tmp_path: Path, token: str, reason: str, mixed: bool
    ) -> None:
        if mixed:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = tmp_path / "rsa.pub.pem"
            public.write_bytes(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            settings = settings.model_copy(
                update={"jwt_algorithms": ["HS256", "RS256"], "jwt_public_key_file": public}
            )
        verifier = TokenVerifier(settings)
        assert verifier.verify(make_token("alice")).sub == "alice"
        with pytest.raises(InvalidToken) as refused:
            verifier.verify(token)
        assert refused.value.detail == reason
