"""Public profiles, the user directory and administration."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from user_service import cli
from user_service.config import Settings

PASSWORD = "correct horse battery staple"
PUBLIC_FIELDS = {"id", "username", "full_name", "is_active"}


async def test_public_profile(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")
    bob = await api.register(username="bob", full_name="Bob B.")

    response = await client.get(f"/api/v1/users/{bob['id']}", headers=alice.headers)

    assert response.status_code == 200
    assert response.json() == {
        "id": bob["id"],
        "username": "bob",
        "full_name": "Bob B.",
        "is_active": True,
    }


async def test_profile_of_an_inactive_user_says_so(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")
    bob = await api.register(username="bob")
    await api.set_flags(bob["id"], is_active=False)

    response = await client.get(f"/api/v1/users/{bob['id']}", headers=alice.headers)

    assert response.status_code == 200
    assert response.json()["is_active"] is False


async def test_missing_user_is_404_and_bad_id_422(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")
    assert (await client.get("/api/v1/users/999999", headers=alice.headers)).status_code == 404
    assert (await client.get("/api/v1/users/0", headers=alice.headers)).status_code == 422
    # Not digits: not a user path at all.
    assert (await client.get("/api/v1/users/abc", headers=alice.headers)).status_code == 404


async def test_profiles_need_authentication(client: httpx.AsyncClient, api) -> None:
    bob = await api.register(username="bob")
    assert (await client.get(f"/api/v1/users/{bob['id']}")).status_code == 401
    assert (await client.get("/api/v1/users/")).status_code == 401


async def test_admin_sees_the_full_record(client: httpx.AsyncClient, api) -> None:
    admin = await api.account(username="root", admin=True)
    bob = await api.register(username="bob")

    response = await client.get(f"/api/v1/users/{bob['id']}", headers=admin.headers)

    assert response.json() == bob


@pytest.mark.parametrize("path", ["/api/v1/users/", "/api/v1/users"])
async def test_directory_lists_active_public_profiles(
    client: httpx.AsyncClient, api, path: str
) -> None:
    alice = await api.account(username="alice")
    await api.register(username="carol")
    gone = await api.register(username="bob")
    await api.set_flags(gone["id"], is_active=False)

    response = await client.get(path, headers=alice.headers)

    assert response.status_code == 200
    users = response.json()
    assert [user["username"] for user in users] == ["alice", "carol"]
    assert all(set(user) == PUBLIC_FIELDS for user in users)


async def test_admin_directory_has_full_records_and_inactive_users(
    client: httpx.AsyncClient, api
) -> None:
    admin = await api.account(username="root", admin=True)
    gone = await api.register(username="bob")
    await api.set_flags(gone["id"], is_active=False)

    users = (await client.get("/api/v1/users/", headers=admin.headers)).json()

    assert [user["username"] for user in users] == ["bob", "root"]
    assert "email" in users[0]
    assert users[0]["is_active"] is False


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("ali", ["alice", "malia"]),
        ("ALI", ["alice", "malia"]),
        ("smith", ["bob"]),  # full name
        ("corp.example", []),  # email: never searched for non-admins
        ("%", ["percent"]),  # wildcards are literal
        ("_", ["under_score"]),
        ("nobody-matches", []),
    ],
)
async def test_directory_search(client: httpx.AsyncClient, api, q: str, expected: list) -> None:
    viewer = await api.account(username="viewer")
    await api.register(username="alice")
    await api.register(username="malia")
    await api.register(username="bob", full_name="Bob Smith")
    await api.register(username="carol", email="carol@corp.example.com")
    await api.register(username="percent", full_name="100% sure")
    await api.register(username="under_score")

    response = await client.get("/api/v1/users/", params={"q": q}, headers=viewer.headers)

    assert response.status_code == 200
    assert [user["username"] for user in response.json()] == expected


async def test_directory_pagination(client: httpx.AsyncClient, api) -> None:
    viewer = await api.account(username="a-viewer")
    for n in range(5):
        await api.register(username=f"user{n}")

    page = await client.get(
        "/api/v1/users/", params={"skip": 2, "limit": 2}, headers=viewer.headers
    )

    assert [user["username"] for user in page.json()] == ["user1", "user2"]
    for params in ({"limit": 0}, {"limit": 101}, {"skip": -1}):
        bad = await client.get("/api/v1/users/", params=params, headers=viewer.headers)
        assert bad.status_code == 422


async def test_admin_deactivates_and_reactivates(client: httpx.AsyncClient, api) -> None:
    admin = await api.account(username="root", admin=True)
    alice = await api.account(username="alice")

    off = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_active": False}, headers=admin.headers
    )

    assert off.status_code == 200
    assert off.json()["is_active"] is False
    login = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert login.status_code == 401
    assert (await client.get("/api/v1/users/me", headers=alice.headers)).status_code == 401

    on = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_active": True}, headers=admin.headers
    )

    assert on.json()["is_active"] is True
    await api.login(username="alice")


async def test_admin_grants_admin(client: httpx.AsyncClient, api) -> None:
    admin = await api.account(username="root", admin=True)
    alice = await api.account(username="alice")

    response = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_superuser": True}, headers=admin.headers
    )

    assert response.json()["is_superuser"] is True
    # Her old token lacks the admin claim: the change voids it (docs/events.md) ...
    deadline = asyncio.get_running_loop().time() + 2.0
    while (await client.get("/api/v1/users/me", headers=alice.headers)).status_code != 401:
        assert asyncio.get_running_loop().time() < deadline, "the old token was never voided"
        await asyncio.sleep(0.02)
    # ... and a new login carries it; the database is what counts either way.
    tokens = await api.login(username="alice")
    users = (
        await client.get(
            "/api/v1/users/", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
    ).json()
    assert "email" in users[0]


async def test_non_admins_cannot_administer(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")
    bob = await api.register(username="bob")

    response = await client.patch(
        f"/api/v1/users/{bob['id']}", json={"is_active": False}, headers=alice.headers
    )

    assert response.status_code == 403


async def test_a_revoked_admin_with_an_old_admin_token_is_refused(
    client: httpx.AsyncClient, api
) -> None:
    former = await api.account(username="former", admin=True)
    bob = await api.register(username="bob")
    await api.set_flags(former.id, is_superuser=False)

    response = await client.patch(
        f"/api/v1/users/{bob['id']}", json={"is_active": False}, headers=former.headers
    )

    assert response.status_code == 403


@pytest.mark.parametrize("body", [{"is_active": False}, {"is_superuser": False}])
async def test_admins_cannot_lock_themselves_out(
    client: httpx.AsyncClient, api, body: dict
) -> None:
    admin = await api.account(username="root", admin=True)
    response = await client.patch(f"/api/v1/users/{admin.id}", json=body, headers=admin.headers)
    assert response.status_code == 409


@pytest.mark.parametrize("body", [{"email": "x@example.com"}, {"is_active": None}, {"id": 3}])
async def test_admin_update_rejects_other_fields(
    client: httpx.AsyncClient, api, body: dict
) -> None:
    admin = await api.account(username="root", admin=True)
    bob = await api.register(username="bob")
    response = await client.patch(f"/api/v1/users/{bob['id']}", json=body, headers=admin.headers)
    assert response.status_code == 422


async def test_admin_update_of_a_missing_user_is_404(client: httpx.AsyncClient, api) -> None:
    admin = await api.account(username="root", admin=True)
    response = await client.patch(
        "/api/v1/users/999999", json={"is_active": True}, headers=admin.headers
    )
    assert response.status_code == 404


async def test_cli_makes_the_first_admin(
    client: httpx.AsyncClient, app: FastAPI, api, settings: Settings
) -> None:
    await api.register(username="alice", email="alice@example.com")

    code = await asyncio.to_thread(cli.main, ["make-admin", "ALICE@example.com"], settings=settings)
    missing = await asyncio.to_thread(cli.main, ["make-admin", "nobody"], settings=settings)

    assert (code, missing) == (0, 1)
    tokens = await api.login(username="alice")
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["is_superuser"] is True


async def test_non_admins_cannot_search_by_email_admins_can(client: httpx.AsyncClient, api) -> None:
    viewer = await api.account(username="viewer")
    admin = await api.account(username="root", admin=True)
    await api.register(username="carol", email="carol@corp.example.com")
    await api.register(username="dave", email="dave@corp.example.com")

    public = await client.get("/api/v1/users/", params={"q": "@corp"}, headers=viewer.headers)
    full = await client.get("/api/v1/users/", params={"q": "@corp"}, headers=admin.headers)

    assert public.status_code == 200
    assert public.json() == []
    assert [user["username"] for user in full.json()] == ["carol", "dave"]
