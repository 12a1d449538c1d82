"""Login: JSON and OAuth2 form, both spellings, one answer for every kind of failure."""

from __future__ import annotations

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from taskflow_kit.testing import WithState
from user_service.models import User
from user_service.passwords import PasswordHasher

PASSWORD = "correct horse battery staple"
JWT_SECRET = "user-service-test-secret-0123456789abcdef"


def claims_of(token: str) -> dict:
    return jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="taskflow")


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/users/login"])
async def test_json_login_returns_a_bearer_pair(client: httpx.AsyncClient, api, path: str) -> None:
    user = await api.register(username="alice")

    response = await client.post(path, json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    access = claims_of(body["access_token"])
    assert access["sub"] == str(user["id"])
    assert access["type"] == "access"
    assert access["username"] == "alice"
    assert access["is_superuser"] is False
    assert access["iss"] == "taskflow"
    assert access["exp"] - access["iat"] == 15 * 60
    refresh = claims_of(body["refresh_token"])
    assert refresh["type"] == "refresh"
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/users/login"])
async def test_oauth2_form_login(client: httpx.AsyncClient, api, path: str) -> None:
    await api.register(username="alice")

    response = await client.post(
        path, data={"grant_type": "password", "username": "alice", "password": PASSWORD}
    )

    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["username"] == "alice"


@pytest.mark.parametrize("identifier", ["ALICE", "alice@example.com", "Alice@EXAMPLE.com"])
async def test_username_or_email_in_any_case(
    client: httpx.AsyncClient, api, identifier: str
) -> None:
    await api.register(username="Alice", email="alice@example.com")

    response = await client.post(
        "/api/v1/auth/login", json={"username": identifier, "password": PASSWORD}
    )

    assert response.status_code == 200, response.text


async def test_every_failure_gets_the_same_401(client: httpx.AsyncClient, api) -> None:
    await api.register(username="alice")
    inactive = await api.register(username="bob")
    await api.set_flags(inactive["id"], is_active=False)

    attempts = [
        {"username": "nobody", "password": PASSWORD},  # unknown user
        {"username": "alice", "password": "wrong password"},  # wrong password
        {"username": "bob", "password": PASSWORD},  # right password, inactive account
        {"username": "alice", "password": "x" * 100_000},  # far longer than any password
    ]
    responses = [await client.post("/api/v1/auth/login", json=body) for body in attempts]

    assert [r.status_code for r in responses] == [401] * 4
    assert {r.json()["detail"] for r in responses} == {"Incorrect username or password"}
    assert all(r.headers["www-authenticate"] == "Bearer" for r in responses)
    assert all(r.headers["content-type"] == "application/problem+json" for r in responses)


class CountingHasher(PasswordHasher):
    def __init__(self, *, rounds: int) -> None:
        super().__init__(rounds=rounds)
        self.checks = 0

    def _verify(self, password: str, hashed: str) -> bool:  # type: ignore[override]
        self.checks += 1
        return super()._verify(password, hashed)


async def test_unknown_user_costs_a_bcrypt_check_like_a_known_one(
    client: httpx.AsyncClient, served: WithState, api
) -> None:
    await api.register(username="alice")
    hasher = CountingHasher(rounds=4)
    served.replace(password_hasher=hasher)

    await client.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong-pw"})
    known = hasher.checks
    await client.post("/api/v1/auth/login", json={"username": "ghost", "password": "wrong-pw"})

    assert known == 1
    assert hasher.checks - known == 1


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice"},
        {"password": PASSWORD},
        {"username": "", "password": PASSWORD},
        {"username": "alice", "password": ""},
        {"username": "alice\x00", "password": PASSWORD},
    ],
)
async def test_incomplete_login_is_422(client: httpx.AsyncClient, body: dict) -> None:
    response = await client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 422
    assert PASSWORD not in response.text


async def test_non_json_non_form_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b"username=alice", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 422


async def test_login_rehashes_a_password_made_with_another_cost(
    client: httpx.AsyncClient, app: FastAPI, served: WithState, api
) -> None:
    await api.register(username="alice")
    served.replace(password_hasher=PasswordHasher(rounds=5))

    await api.login(username="alice")

    async with app.state.engine.connect() as connection:
        hashed = await connection.scalar(select(User.hashed_password))
    assert hashed is not None
    assert hashed.startswith("$2b$05$")
    await api.login(username="alice")  # the new hash verifies


async def test_openapi_documents_json_and_form_login(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    content = schema["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-www-form-urlencoded"}


async def test_another_method_on_the_login_path_is_405_with_allow(
    client: httpx.AsyncClient, api
) -> None:
    """`/users/login` is not read as `/users/{user_id}` (whose admin check answered 403)."""
    admin = await api.account(username="root", admin=True)
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, "/api/v1/users/login", headers=admin.headers)
        assert response.status_code == 405, (method, response.text)
        assert response.headers["allow"] == "POST"
        assert response.headers["content-type"] == "application/problem+json"
