"""The caller's own account: read, update, change password, delete."""

from __future__ import annotations

import httpx
import pytest

PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize("path", ["/api/v1/auth/me", "/api/v1/users/me"])
async def test_me_returns_the_full_record(client: httpx.AsyncClient, api, path: str) -> None:
    alice = await api.account(username="alice", full_name="Alice L.")

    response = await client.get(path, headers=alice.headers)

    assert response.status_code == 200
    assert response.json() == alice.user


async def test_update_profile(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")

    response = await client.patch(
        "/api/v1/users/me",
        json={
            "full_name": "Alice Liddell",
            "email": "liddell@example.org",
            "username": "al1ce",
            "current_password": PASSWORD,
        },
        headers=alice.headers,
    )

    assert response.status_code == 200, response.text
    user = response.json()
    assert (user["full_name"], user["email"], user["username"]) == (
        "Alice Liddell",
        "liddell@example.org",
        "al1ce",
    )
    assert user["updated_at"] > alice.user["updated_at"]
    assert (await api.login(username="liddell@example.org"))["access_token"]


async def test_partial_update_keeps_other_fields(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice", full_name="Alice")
    response = await client.patch(
        "/api/v1/users/me", json={"full_name": None}, headers=alice.headers
    )
    assert response.status_code == 200
    assert response.json()["full_name"] is None
    assert response.json()["username"] == "alice"


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"email": "BOB@example.com"}, "email"),
        ({"username": "Bob"}, "username"),
    ],
)
async def test_update_to_a_taken_name_is_409(
    client: httpx.AsyncClient, api, change: dict, detail: str
) -> None:
    alice = await api.account(username="alice")
    await api.register(username="bob", email="bob@example.com")

    body = {**change, "current_password": PASSWORD}
    response = await client.patch("/api/v1/users/me", json=body, headers=alice.headers)

    assert response.status_code == 409
    assert detail in response.json()["detail"]


async def test_changing_only_the_case_of_ones_own_username_is_allowed(
    client: httpx.AsyncClient, api
) -> None:
    alice = await api.account(username="alice")
    response = await client.patch(
        "/api/v1/users/me",
        json={"username": "Alice", "current_password": PASSWORD},
        headers=alice.headers,
    )
    assert response.status_code == 200
    assert response.json()["username"] == "Alice"


@pytest.mark.parametrize(
    "body",
    [
        {"is_superuser": True},
        {"is_active": False},
        {"password": "new password here"},
        {"username": None},
        {"email": None},
        {"username": "x"},
    ],
)
async def test_invalid_update_is_422(client: httpx.AsyncClient, api, body: dict) -> None:
    alice = await api.account(username="alice")

    response = await client.patch("/api/v1/users/me", json=body, headers=alice.headers)

    assert response.status_code == 422
    me = (await client.get("/api/v1/users/me", headers=alice.headers)).json()
    assert me["is_superuser"] is False
    assert me["username"] == "alice"


async def test_change_password(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")

    response = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "Ünïcödé passphrase"},
        headers=alice.headers,
    )

    assert response.status_code == 204
    old = await client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert old.status_code == 401
    await api.login(username="alice", password="Ünïcödé passphrase")


async def test_change_password_with_wrong_current_is_400(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")

    response = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": "not it at all", "new_password": "another passphrase"},
        headers=alice.headers,
    )

    assert response.status_code == 400
    assert "not it at all" not in response.text
    await api.login(username="alice")  # unchanged


async def test_change_password_validates_the_new_one(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")
    response = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=alice.headers,
    )
    assert response.status_code == 422


async def test_delete_me(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")

    response = await client.request(
        "DELETE", "/api/v1/users/me", json={"current_password": PASSWORD}, headers=alice.headers
    )

    assert response.status_code == 204
    login = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert login.status_code == 401
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": alice.tokens["refresh_token"]}
    )
    assert refresh.status_code == 401
    # Email and username are free again; the new account gets a new id.
    again = await api.register(username="alice")
    assert again["id"] != alice.id
