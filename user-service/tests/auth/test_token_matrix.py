"""Every malformed, forged or misused access token is a 401 with `WWW-Authenticate: Bearer`."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import httpx
import jwt
import pytest

JWT_SECRET = "user-service-test-secret-0123456789abcdef"


def claims(user_id: int, **changes: object) -> dict:
    now = int(time.time())
    payload: dict = {
        "sub": str(user_id),
        "type": "access",
        "username": "alice",
        "is_superuser": False,
        "iss": "taskflow",
        "aud": "taskflow",
        "iat": now,
        "exp": now + 600,
        "jti": "test",
    }
    payload.update(changes)
    return {key: value for key, value in payload.items() if value is not None}


def signed(payload: dict, secret: str = JWT_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def alg_none(user_id: int) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(user_id))}."


def tampered(user_id: int) -> str:
    header, _, signature = signed(claims(user_id)).split(".")
    return f"{header}.{b64(claims(user_id, is_superuser=True))}.{signature}"


BAD_TOKENS: dict[str, Callable[[int], str]] = {
    "alg none": alg_none,
    "wrong key": lambda uid: signed(claims(uid), "another-secret-that-is-long-enough-000"),
    "tampered payload": tampered,
    "expired": lambda uid: signed(
        claims(uid, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    ),
    "missing exp": lambda uid: signed(claims(uid, exp=None)),
    "missing sub": lambda uid: signed(claims(uid, sub=None)),
    "wrong iss": lambda uid: signed(claims(uid, iss="someone-else")),
    "wrong aud": lambda uid: signed(claims(uid, aud="another-app")),
    "refresh as access": lambda uid: signed(claims(uid, type="refresh")),
    "not a jwt": lambda uid: "not-a-jwt",
    "non-numeric sub": lambda uid: signed(claims(uid, sub="alice")),
}


async def test_a_well_formed_token_is_accepted(client: httpx.AsyncClient, api) -> None:
    """The control case: the hand-made claims above are right when nothing is broken."""
    user = await api.register(username="alice")
    response = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {signed(claims(user['id']))}"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("case", list(BAD_TOKENS))
@pytest.mark.parametrize("path", ["/api/v1/auth/me", "/api/v1/users/me", "/api/v1/users/"])
async def test_bad_token_is_401_with_bearer_challenge(
    client: httpx.AsyncClient, api, case: str, path: str
) -> None:
    user = await api.register(username="alice")
    token = BAD_TOKENS[case](user["id"])

    response = await client.get(path, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"


async def test_missing_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("change", ["deactivated", "deleted"])
async def test_live_access_token_of_a_gone_account_is_refused(
    client: httpx.AsyncClient, api, change: str
) -> None:
    alice = await api.account(username="alice")
    if change == "deactivated":
        await api.set_flags(alice.id, is_active=False)
    else:
        deleted = await client.request(
            "DELETE",
            "/api/v1/users/me",
            json={"current_password": alice.password},
            headers=alice.headers,
        )
        assert deleted.status_code == 204

    response = await client.get("/api/v1/auth/me", headers=alice.headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
