"""Hostile input to user-service answers 4xx, never 5xx (issue 9)."""

from __future__ import annotations

import httpx
import pytest

DEPTH = 10_000


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/users/login"])
@pytest.mark.parametrize("nested", ["[" * DEPTH + "]" * DEPTH, '{"a":' * DEPTH + "1" + "}" * DEPTH])
async def test_deeply_nested_login_body_is_400(
    client: httpx.AsyncClient, path: str, nested: str
) -> None:
    response = await client.post(path, content=nested, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_deeply_nested_register_body_is_4xx(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content="[" * DEPTH + "]" * DEPTH,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
