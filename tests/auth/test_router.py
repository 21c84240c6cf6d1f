"""Bearer tokens: the good one gets in (and provisions the user), every bad one is a 401
problem and writes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.users.models import User
from tests.helpers import make_token


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "mallory", "roles": ["admin"], "iat": now, "exp": now + 600, **extra}


async def _get_me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


async def _user_count(session: AsyncSession, sub: str) -> int:
    return len((await session.scalars(select(User).where(User.id == sub))).all())


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path_factory.mktemp("keys") / "rsa.pub.pem"
    path.write_bytes(public_pem)
    return private_pem, path


class TestValidToken:
    async def test_provisions_user_on_first_sight(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        token = make_token("ada", ["customer", "payee", "unknown-role"], email="ada@example.com")
        response = await _get_me(client, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == "ada"
        assert body["roles"] == ["customer", "payee"]
        assert body["email"] == "ada@example.com"
        assert response.headers["x-request-id"]
        user = await session.get(User, "ada")
        assert user is not None
        assert user.roles == ["customer", "payee"]

    async def test_second_request_updates_roles(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await _get_me(client, make_token("bo", ["customer"]))
        response = await _get_me(client, make_token("bo", ["customer", "admin"]))
        assert response.json()["roles"] == ["admin", "customer"]
        assert await _user_count(session, "bo") == 1

    async def test_rs256_public_key(self, app_factory: Any, rsa_keys: tuple[bytes, Path]) -> None:
        private_pem, public_path = rsa_keys
        app = app_factory(jwt_algorithms=["RS256"], jwt_public_key_file=public_path)
        token = jwt.encode(_claims(sub="rsa-user"), private_pem.decode(), algorithm="RS256")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            assert (await _get_me(client, token)).status_code == 200

    async def test_es256_jwks_file(self, app_factory: Any, tmp_path: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        public_jwk = jwk.construct(public_pem, "ES256").to_dict()
        public_jwk["kid"] = "k1"
        jwks = tmp_path / "jwks.json"
        jwks.write_text(json.dumps({"keys": [public_jwk]}))
        app = app_factory(jwt_algorithms=["ES256"], jwt_jwks_file=jwks)
        token = jwt.encode(
            _claims(sub="ec-user"), private_pem, algorithm="ES256", headers={"kid": "k1"}
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            assert (await _get_me(client, token)).status_code == 200

    async def test_issuer_and_audience_checked_when_configured(self, app_factory: Any) -> None:
        app = app_factory(jwt_issuer="https://auth.example", jwt_audience="payments")
        good = make_token("iss-user", iss="https://auth.example", aud="payments")
        wrong_iss = make_token("iss-user", iss="https://evil.example", aud="payments")
        wrong_aud = make_token("iss-user", iss="https://auth.example", aud="other")
        missing = make_token("iss-user")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            assert (await _get_me(client, good)).status_code == 200
            for token in (wrong_iss, wrong_aud, missing):
                assert (await _get_me(client, token)).status_code == 401

    async def test_clock_skew_is_bounded(self, client: httpx.AsyncClient) -> None:
        # Expired 10 s ago: inside the 30 s leeway. Expired 120 s ago: outside.
        assert (await _get_me(client, make_token("skew", ttl=-10))).status_code == 200
        assert (await _get_me(client, make_token("skew", ttl=-120))).status_code == 401


class TestRejectedTokens:
    @pytest.mark.parametrize(
        "token",
        [
            pytest.param(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.", id="none"),
            pytest.param(make_token("mallory", secret="x" * 48), id="wrong-key"),
            pytest.param(make_token("mallory", ttl=-3600), id="expired"),
            pytest.param(
                jwt.encode(
                    {k: v for k, v in _claims().items() if k != "sub"},
                    "test-secret-that-is-long-enough-0123456789abcdef",
                    algorithm="HS256",
                ),
                id="missing-sub",
            ),
            pytest.param(
                jwt.encode(
                    {k: v for k, v in _claims().items() if k != "exp"},
                    "test-secret-that-is-long-enough-0123456789abcdef",
                    algorithm="HS256",
                ),
                id="missing-exp",
            ),
            pytest.param(make_token("mallory", algorithm="HS512"), id="algorithm-not-pinned"),
            pytest.param("not-a-jwt", id="garbage"),
        ],
    )
    async def test_bad_token_is_401_problem_and_writes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, token: str
    ) -> None:
        response = await _get_me(client, token)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_token"
        assert "WWW-Authenticate" in response.headers
        assert await _user_count(session, "mallory") == 0

    async def test_missing_header(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/me")
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"

    async def test_hs_rs_algorithm_swap(
        self, app_factory: Any, rsa_keys: tuple[bytes, Path], session: AsyncSession
    ) -> None:
        """The classic attack: HMAC-sign with the RSA *public* key as the secret."""
        _private, public_path = rsa_keys
        app = app_factory(jwt_algorithms=["RS256"], jwt_public_key_file=public_path)
        header = _b64({"alg": "HS256", "typ": "JWT"})
        body = _b64(_claims())
        signature = hmac.new(
            public_path.read_bytes(), f"{header}.{body}".encode(), hashlib.sha256
        ).digest()
        forged = f"{header}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            response = await _get_me(client, forged)
        assert response.status_code == 401
        assert await _user_count(session, "mallory") == 0
