"""Changing email or username and deleting the account need the current password; a new email
ends the account's other sessions. Changing only the full name needs nothing more."""

from __future__ import annotations

import httpx
import pytest

PASSWORD = "correct horse battery staple"


async def refresh(client: httpx.AsyncClient, token: str) -> int:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    return response.status_code


@pytest.mark.parametrize(
    "change", [{"email": "new@example.com"}, {"username": "alice2"}], ids=["email", "username"]
)
async def test_email_or_username_change_without_the_password_is_refused(
    client: httpx.AsyncClient, api, change: dict
) -> None:
    alice = await api.account(username="alice")

    missing = await client.patch("/api/v1/users/me", json=change, headers=alice.headers)
    wrong = await client.patch(
        "/api/v1/users/me",
        json={**change, "current_password": "not the password"},
        headers=alice.headers,
    )

    assert missing.status_code == 400
    assert "current_password" in missing.json()["detail"]
    assert wrong.status_code == 400
    assert "not the password" not in wrong.text
    me = (await client.get("/api/v1/users/me", headers=alice.headers)).json()
    assert (me["email"], me["username"]) == ("alice@example.com", "alice")


async def test_full_name_alone_and_unchanged_fields_need_no_password(
    client: httpx.AsyncClient, api
) -> None:
    alice = await api.account(username="alice")

    response = await client.patch(
        "/api/v1/users/me",
        json={"full_name": "Alice L.", "email": "alice@example.com", "username": "alice"},
        headers=alice.headers,
    )

    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "Alice L."


async def test_an_email_change_ends_the_other_sessions_only(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")
    laptop = await api.login(username="alice")
    phone = await api.login(username="alice")

    response = await client.patch(
        "/api/v1/users/me",
        json={"email": "alice@new.example.com", "current_password": PASSWORD},
        headers=alice.headers,
    )

    assert response.status_code == 200, response.text
    assert await refresh(client, laptop["refresh_token"]) == 401
    assert await refresh(client, phone["refresh_token"]) == 401
    assert await refresh(client, alice.tokens["refresh_token"]) == 200  # this session goes on


async def test_a_username_change_keeps_the_other_sessions(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")
    laptop = await api.login(username="alice")

    response = await client.patch(
        "/api/v1/users/me",
        json={"username": "alice2", "current_password": PASSWORD},
        headers=alice.headers,
    )

    assert response.status_code == 200
    assert await refresh(client, laptop["refresh_token"]) == 200


async def test_deleting_the_account_needs_the_password(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")

    no_body = await client.delete("/api/v1/users/me", headers=alice.headers)
    wrong = await client.request(
        "DELETE",
        "/api/v1/users/me",
        json={"current_password": "not the password"},
        headers=alice.headers,
    )

    assert no_body.status_code == 422
    assert wrong.status_code == 400
    assert (await client.get("/api/v1/users/me", headers=alice.headers)).status_code == 200


async def test_password_guesses_through_reauthentication_are_throttled(
    client: httpx.AsyncClient, api
) -> None:
    alice = await api.account(username="alice")

    statuses = [
        (
            await client.request(
                "DELETE",
                "/api/v1/users/me",
                json={"current_password": f"guess-{n}"},
                headers=alice.headers,
            )
        ).status_code
        for n in range(6)
    ]

    assert statuses == [400] * 5 + [429]
