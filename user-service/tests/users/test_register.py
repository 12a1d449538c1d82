"""Registration: both route spellings, validation, uniqueness (also under concurrency)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from user_service.models import User

PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize("path", ["/api/v1/auth/register", "/api/v1/users/", "/api/v1/users"])
async def test_register_creates_user_on_every_spelling(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.post(
        path,
        json={
            "email": "Alice@Example.com",
            "username": "alice",
            "password": PASSWORD,
            "full_name": "Alice Liddell",
        },
    )
    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == {
        "id",
        "email",
        "username",
        "full_name",
        "is_active",
        "is_superuser",
        "created_at",
        "updated_at",
    }
    assert user["username"] == "alice"
    assert user["email"] == "Alice@example.com"  # the domain is normalised to lower case
    assert user["full_name"] == "Alice Liddell"
    assert user["is_active"] is True
    assert user["is_superuser"] is False
    assert response.headers["location"] == f"/api/v1/users/{user['id']}"
    assert PASSWORD not in response.text
    assert "hash" not in response.text


@pytest.mark.parametrize(
    "extra",
    [
        {"id": 7},
        {"is_superuser": True},
        {"is_active": False},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"hashed_password": "x"},
    ],
)
async def test_register_rejects_unknown_fields(client: httpx.AsyncClient, extra: dict) -> None:
    body = {"email": "a@example.com", "username": "alice", "password": PASSWORD, **extra}
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["loc"][-1] for error in response.json()["errors"]] == list(extra)


async def test_email_and_username_are_unique_ignoring_case(client: httpx.AsyncClient, api) -> None:
    await api.register(username="alice", email="alice@example.com")

    same_email = await client.post(
        "/api/v1/users/",
        json={"email": "ALICE@EXAMPLE.COM", "username": "other", "password": PASSWORD},
    )
    same_username = await client.post(
        "/api/v1/users/",
        json={"email": "other@example.com", "username": "ALICE", "password": PASSWORD},
    )

    assert same_email.status_code == 409
    assert same_email.json()["detail"] == "A user with this email already exists"
    assert same_username.status_code == 409
    assert same_username.json()["detail"] == "A user with this username already exists"


async def test_twenty_concurrent_registrations_of_one_email_create_one_user(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    spellings = ["race@example.com", "RACE@example.com", "Race@Example.com", "rAcE@EXAMPLE.COM"]

    async def register(index: int) -> httpx.Response:
        return await client.post(
            "/api/v1/auth/register",
            json={
                "email": spellings[index % len(spellings)],
                "username": f"racer{index}",
                "password": PASSWORD,
            },
        )

    responses = await asyncio.gather(*(register(index) for index in range(20)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19, [r.text for r in responses if r.status_code != 409]
    async with app.state.engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(User)
            .where(func.lower(User.email) == "race@example.com")
        )
    assert count == 1


async def test_twenty_concurrent_registrations_of_one_username_create_one_user(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    async def register(index: int) -> httpx.Response:
        return await client.post(
            "/api/v1/users/",
            json={
                "email": f"user{index}@example.com",
                "username": "SameName" if index % 2 else "samename",
                "password": PASSWORD,
            },
        )

    responses = await asyncio.gather(*(register(index) for index in range(20)))

    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    async with app.state.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize(
    ("password", "status"),
    [
        ("pw4u", 422),
        ("x" * 7, 422),
        ("x" * 8, 201),
        ("ü" * 8, 201),  # 8 characters, 16 bytes
        ("🔑" * 128, 201),  # 128 characters, 512 bytes: far beyond bcrypt's 72
        ("x" * 129, 422),
    ],
)
async def test_password_length_is_counted_in_characters(
    client: httpx.AsyncClient, password: str, status: int
) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "p@example.com", "username": "pat", "password": password},
    )
    assert response.status_code == status, response.text
    assert password not in response.text


async def test_passwords_longer_than_72_bytes_are_fully_significant(
    client: httpx.AsyncClient, api
) -> None:
    password = "ä" * 40 + "tail-one"  # 88 bytes
    await api.register(username="longpw", password=password)

    right = await client.post(
        "/api/v1/auth/login", json={"username": "longpw", "password": password}
    )
    same_first_72_bytes = await client.post(
        "/api/v1/auth/login", json={"username": "longpw", "password": "ä" * 40 + "tail-two"}
    )

    assert right.status_code == 200
    assert same_first_72_bytes.status_code == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "q7"),
        ("username", "a" * 51),
        ("username", "has space"),
        ("username", "at@sign"),
        ("username", "ünïcode"),
        ("email", "not-an-email"),
        ("email", "secret-local-part@"),
        ("full_name", "x" * 201),
        ("full_name", "nul\x00byte"),
        ("password", "\ud800" * 10),
    ],
)
async def test_invalid_input_is_422_without_echoing_it(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    body = {"email": "v@example.com", "username": "valid", "password": PASSWORD, field: value}
    # json.dumps escapes lone surrogates as \ud800, as a hostile client could send them.
    response = await client.post(
        "/api/v1/auth/register",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["status"] == 422
    assert [error["loc"] for error in problem["errors"]] == [["body", field]]
    assert value not in response.text
    assert PASSWORD not in response.text


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b'{"password": "hunter2hunter2", ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert "hunter2" not in response.text
