"""A filtered list's page found among the filter's matches (`ListShape.matches`): every match
once and in order through cursor and skip pages, in every sort, whether the matches fit under
the count's cap (the page comes from them) or not (the page statement reads it), and only tasks
that the caller may still see and that still match."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from task_factories import auth, create_task, pages_by_cursor
from task_service.tasks import listing
from task_service.tasks.repository import READ_COLUMNS, TaskRepository, visible_to
from task_service.tasks.schemas import TaskFilter

pytestmark = pytest.mark.usefixtures("client")
URL = "/api/v1/tasks/"
CAP = 4  # the count's cap in these tests: FEW matches fit under it, MANY do not
FEW, MANY = 3, 7
SORTS = ("created_at", "updated_at", "due_date", "priority", "title", "status")


@pytest.fixture(autouse=True)
def small_cap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(listing, "TOTAL_CAP", CAP)
    listing.list_statements.cache_clear()
    listing.match_statements.cache_clear()
    yield
    listing.list_statements.cache_clear()
    listing.match_statements.cache_clear()


async def make_tasks(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    for index in range(MANY + 2):
        tags = ["many", *(["few"] if index < FEW else [])] if index < MANY else ["neither"]
        due = None if index % 3 == 0 else (now + timedelta(days=index % 2)).isoformat()
        await create_task(
            client,
            title=f"Task {index % 2}",
            due_date=due,
            priority=["low", "high", "urgent"][index % 3],
            tags=tags,
        )


async def ordered_ids(app: FastAPI, task_filter: TaskFilter) -> list[int]:
    """Every match in the listing's order, from the page statement alone (an ordered walk)."""
    everything = task_filter.model_copy(update={"limit": 100})
    page, _ = listing.list_statements(listing.ListShape.of(everything), READ_COLUMNS)
    values = listing.list_values(everything, 1, datetime.now(UTC))
    async with app.state.pool.acquire() as connection:
        rows = await page.fetch(connection, **values)
    return [row["id"] for row in rows]


@pytest.mark.parametrize(("tag", "matches"), [("few", FEW), ("many", MANY)])
async def test_cursor_and_skip_pages_give_every_match_once_in_order(
    client: httpx.AsyncClient, app: FastAPI, tag: str, matches: int
) -> None:
    await make_tasks(client)
    for sort_by in SORTS:
        for order in ("asc", "desc"):
            params: dict[str, Any] = {"tags": tag, "sort_by": sort_by, "sort_order": order}
            expected = await ordered_ids(
                app, TaskFilter(tags=[tag], sort_by=sort_by, sort_order=order)
            )
            assert len(expected) == matches
            bodies = await pages_by_cursor(client, params)
            walked = [task["id"] for body in bodies for task in body["tasks"]]
            assert walked == expected, (sort_by, order)
            # Exact under the cap, the cap as a lower bound beyond it, on every page.
            total = (matches, True) if matches <= CAP else (CAP, False)
            assert all((body["total"], body["total_exact"]) == total for body in bodies)
            skipped = await client.get(
                URL, params={**params, "skip": 1, "limit": 2}, headers=auth(1)
            )
            assert [task["id"] for task in skipped.json()["tasks"]] == expected[1:3]


async def test_a_page_past_the_last_match_is_empty_with_the_exact_total(
    client: httpx.AsyncClient,
) -> None:
    await make_tasks(client)
    body = (await client.get(URL, params={"tags": "few", "skip": 10}, headers=auth(1))).json()
    assert (body["tasks"], body["total"], body["total_exact"]) == ([], FEW, True)
    first = (await client.get(URL, params={"tags": "few", "limit": FEW}, headers=auth(1))).json()
    assert first["next_cursor"] is None
    none = (await client.get(URL, params={"tags": "absent"}, headers=auth(1))).json()
    assert (none["tasks"], none["total"], none["total_exact"]) == ([], 0, True)


async def test_rows_read_by_id_are_only_those_still_visible_and_still_matching(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Between the matches and the rows read by id another request may change a task: a task
    that lost the tag, or that the caller may no longer see, is left out of the page."""
    kept = await create_task(client, title="kept", tags=["few"])
    untagged = await create_task(client, title="untagged", tags=["few"])
    others = await create_task(client, owner=2, title="others'", tags=["few"])
    task_filter = TaskFilter(tags=["few"])
    shape = listing.ListShape.of(task_filter)
    _, by_ids = listing.match_statements(shape, READ_COLUMNS, visible_to)
    values = listing.list_values(task_filter, 1, datetime.now(UTC))
    ids = [kept["id"], untagged["id"], others["id"]]
    async with app.state.pool.acquire() as connection:
        await connection.execute("UPDATE task SET tags = '{}' WHERE id = $1", untagged["id"])
        rows = await by_ids.fetch(connection, **values, task_ids=ids)
        page = await TaskRepository(connection).find_page(task_filter, 1, datetime.now(UTC))
    assert [row["id"] for row in rows] == [kept["id"]]
    assert [task.id for task in page.tasks] == [kept["id"]]
