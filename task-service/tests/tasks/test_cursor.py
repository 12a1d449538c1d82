"""Keyset pages of `GET /tasks/`: `next_cursor`, bad cursors, and `total` past its cap."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from task_factories import auth, create_task, pages_by_cursor
from task_service.tasks import listing

pytestmark = pytest.mark.usefixtures("client")
URL = "/api/v1/tasks/"


async def test_next_cursor_pages_through_every_sort_including_missing_due_dates(
    client: httpx.AsyncClient,
) -> None:
    now = datetime.now(UTC)
    for index in range(7):
        due = None if index % 3 == 0 else (now + timedelta(days=index % 2)).isoformat()
        priority = ["low", "high", "urgent"][index % 3]
        await create_task(client, title=f"Task {index % 2}", due_date=due, priority=priority)
    for sort_by in ("created_at", "updated_at", "due_date", "priority", "title", "status"):
        for order in ("asc", "desc"):
            params = {"sort_by": sort_by, "sort_order": order}
            everything = (await client.get(URL, params=params, headers=auth(1))).json()
            expected = [task["id"] for task in everything["tasks"]]
            bodies = await pages_by_cursor(client, params)
            walked = [task["id"] for body in bodies for task in body["tasks"]]
            assert walked == expected, (sort_by, order)
            assert everything["next_cursor"] is None


async def test_skip_counts_from_the_cursor(client: httpx.AsyncClient) -> None:
    ids = [(await create_task(client, title=f"t{index}"))["id"] for index in range(5)]
    first = (await client.get(URL, params={"limit": 1}, headers=auth(1))).json()
    after = await client.get(
        URL, params={"limit": 2, "skip": 1, "cursor": first["next_cursor"]}, headers=auth(1)
    )
    assert [task["id"] for task in after.json()["tasks"]] == ids[::-1][2:4]


def forged(fields: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        "e30",  # {}
        forged(["created_at", "desc", "yesterday", 1]),
        forged(["created_at", "desc", "2030-01-01T00:00:00", 1]),  # naive
        forged(["created_at", "desc", "2030-01-01T00:00:00+00:00", 0]),
        forged(["created_at", "desc", "2030-01-01T00:00:00+00:00", True]),
        forged(["priority", "desc", 1, 1]),  # another sort than the request's
        "A" * 2000,
    ],
)
async def test_a_bad_cursor_is_a_422_problem(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get(URL, params={"cursor": cursor}, headers=auth(1))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any("cursor" in error["loc"] for error in response.json()["errors"])


@pytest.mark.parametrize(
    ("sort_by", "key"),
    [("priority", 9), ("status", "todo"), ("title", 3), ("due_date", "soon")],
)
async def test_a_cursor_key_of_the_wrong_kind_is_refused(
    client: httpx.AsyncClient, sort_by: str, key: object
) -> None:
    cursor = forged([sort_by, "asc", key, 1])
    response = await client.get(
        URL, params={"cursor": cursor, "sort_by": sort_by, "sort_order": "asc"}, headers=auth(1)
    )
    assert response.status_code == 422


async def test_total_is_exact_from_the_counts_and_capped_for_other_filters(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "TOTAL_CAP", 3)
    listing.list_statements.cache_clear()
    listing.match_statements.cache_clear()
    try:
        for index in range(6):
            await create_task(client, title=f"report {index}", tags=["x"])
        await create_task(client, title="other", tags=["x"], status="done")
        plain = (await client.get(URL, params={"limit": 2}, headers=auth(1))).json()
        assert (plain["total"], plain["total_exact"]) == (7, True)
        done = await client.get(URL, params={"limit": 2, "status": "todo"}, headers=auth(1))
        assert (done.json()["total"], done.json()["total_exact"]) == (6, True)
        tagged = (await client.get(URL, params={"limit": 2, "tags": "x"}, headers=auth(1))).json()
        assert (tagged["total"], tagged["total_exact"]) == (3, False)
        found = await client.get(URL, params={"limit": 2, "search": "other"}, headers=auth(1))
        assert (found.json()["total"], found.json()["total_exact"]) == (1, True)
        # The running counts follow deletes and status changes.
        async with app.state.engine.begin() as connection:
            await connection.execute(text("DELETE FROM task WHERE title = 'report 0'"))
            await connection.execute(
                text("UPDATE task SET status = 'in_progress', completed_at = NULL")
            )
        counts = (await client.get(URL, params={"limit": 2}, headers=auth(1))).json()
        assert (counts["total"], counts["total_exact"]) == (6, True)
        todo = await client.get(URL, params={"limit": 2, "status": "todo"}, headers=auth(1))
        assert todo.json()["total"] == 0
    finally:
        listing.list_statements.cache_clear()
        listing.match_statements.cache_clear()
