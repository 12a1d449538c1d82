"""Hypothesis against plain-Python references: the dependency graph, and listing/paging."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from task_factories import auth, insert_tasks, plain_task
from task_service.database import Base
from task_service.tasks.models import TaskDependency
from taskflow_kit.testing import empty_tables

pytestmark = pytest.mark.usefixtures("client")

PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def reachable(edges: set[tuple[int, int]], start: int, goal: int) -> bool:
    seen, stack = {start}, [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for source, target in edges:
            if source == node and target not in seen:
                seen.add(target)
                stack.append(target)
    return False


@PROPERTY_SETTINGS
@given(additions=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=20))
async def test_dependency_additions_match_a_reference_graph(
    client: httpx.AsyncClient, app: FastAPI, additions: list[tuple[int, int]]
) -> None:
    await empty_tables(app.state.engine, Base.metadata)
    ids = await insert_tasks(app, [plain_task(f"t{n}") for n in range(6)])
    reference: set[tuple[int, int]] = set()
    for a, b in additions:
        response = await client.post(
            f"/api/v1/tasks/{ids[a]}/dependencies",
            json={"depends_on_id": ids[b]},
            headers=auth(1),
        )
        if a == b:
            assert response.status_code == 422
        elif reachable(reference, ids[b], ids[a]):
            assert response.status_code == 409
            cycle = response.json()["cycle"]
            assert cycle[0] == cycle[-1] == ids[a]
            assert cycle[1] == ids[b]
            assert all(edge in reference for edge in itertools.pairwise(cycle[1:]))
        else:
            assert response.status_code == 201, response.text
            reference.add((ids[a], ids[b]))
    async with app.state.sessionmaker() as session:
        rows = await session.execute(select(TaskDependency.task_id, TaskDependency.depends_on_id))
        stored = {(source, target) for source, target in rows}
    assert stored == reference
    assert not any(reachable(stored, target, source) for source, target in stored)


# -- listing ----------------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
HOUR = timedelta(hours=1)
TITLES = ["alpha", "Alpha", "beta", "Gamma ray", "50% off", "delta_x", "alp"]
DESCRIPTIONS = [None, "", "gamma in text", "ALPHA notes", "under_score"]
SEARCHES = ["al", "ET", "gamma", "%", "_", "a r", "zzz"]
PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2, "urgent": 3}
STATUS_RANK = {"todo": 0, "in_progress": 1, "done": 2}

# Due dates are whole hours away from the real clock, so `overdue` cannot flip mid-example.
hours = st.integers(-3, 3).filter(bool)

task_rows = st.fixed_dictionaries(
    {
        "title": st.sampled_from(TITLES),
        "description": st.sampled_from(DESCRIPTIONS),
        "status": st.sampled_from(list(STATUS_RANK)),
        "priority": st.sampled_from(list(PRIORITY_RANK)),
        "tags": st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3),
        "owner_id": st.integers(1, 2),
        "assignee_id": st.sampled_from([None, 1, 2, 3]),
        "due_date": st.none() | hours.map(lambda h: NOW + 2 * h * HOUR),
        "created_at": st.integers(0, 3).map(lambda m: NOW - timedelta(days=1, minutes=m)),
        "updated_at": st.integers(0, 2).map(lambda m: NOW - timedelta(days=1, minutes=m)),
    }
)

filters = st.fixed_dictionaries(
    {},
    optional={
        "scope": st.sampled_from(["all", "owned", "assigned"]),
        "status": st.lists(st.sampled_from(["todo", "in_progress", "done", "pending"]), max_size=2),
        "priority": st.lists(st.sampled_from(list(PRIORITY_RANK)), max_size=2),
        "tags": st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2),
        "search": st.sampled_from(SEARCHES),
        "assignee_id": st.integers(1, 3),
        "due_before": hours.map(lambda h: NOW + (2 * h + 1) * HOUR),
        "due_after": hours.map(lambda h: NOW + (2 * h - 1) * HOUR),
        "overdue": st.booleans(),
        "sort_by": st.sampled_from(
            ["created_at", "updated_at", "due_date", "priority", "title", "status"]
        ),
        "sort_order": st.sampled_from(["asc", "desc"]),
    },
)


@dataclass
class Row:
    id: int
    data: dict[str, Any]


def reference_listing(rows: list[Row], params: dict[str, Any], user: int) -> list[int]:
    now = datetime.now(UTC)

    def keep(row: Row) -> bool:
        t = row.data
        scope = params.get("scope", "all")
        if scope == "owned" and t["owner_id"] != user:
            return False
        if scope == "assigned" and t["assignee_id"] != user:
            return False
        if scope == "all" and user not in (t["owner_id"], t["assignee_id"]):
            return False
        statuses = {{"pending": "todo"}.get(s, s) for s in params.get("status", [])}
        if statuses and t["status"] not in statuses:
            return False
        if params.get("priority") and t["priority"] not in params["priority"]:
            return False
        if not set(params.get("tags", [])) <= set(t["tags"]):
            return False
        if "search" in params:
            term = params["search"].lower()
            if term not in t["title"].lower() and term not in (t["description"] or "").lower():
                return False
        if "assignee_id" in params and t["assignee_id"] != params["assignee_id"]:
            return False
        due = t["due_date"]
        if "due_before" in params and not (due is not None and due < params["due_before"]):
            return False
        if "due_after" in params and not (due is not None and due >= params["due_after"]):
            return False
        overdue = t["status"] != "done" and due is not None and due < now
        return "overdue" not in params or overdue == params["overdue"]

    sort_by = params.get("sort_by", "created_at")
    descending = params.get("sort_order", "desc") == "desc"

    def key(row: Row) -> Any:
        value = row.data[sort_by]
        if sort_by == "priority":
            return PRIORITY_RANK[value]
        if sort_by == "status":
            return STATUS_RANK[value]
        if sort_by == "title":
            return value.lower()
        return value

    matching = sorted((row for row in rows if keep(row)), key=lambda r: r.id, reverse=descending)
    present = [row for row in matching if key(row) is not None]
    missing = [row for row in matching if key(row) is None]
    # sorted() is stable, so equal keys keep the id order chosen above; no-value rows go last.
    return [row.id for row in sorted(present, key=key, reverse=descending) + missing]


def query(params: dict[str, Any]) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, datetime):
            encoded[name] = value.isoformat()
        elif isinstance(value, bool):
            encoded[name] = str(value).lower()
        elif name == "tags":
            encoded[name] = ",".join(value)
        else:
            encoded[name] = value
    return encoded


@PROPERTY_SETTINGS
@given(
    data=st.lists(task_rows, max_size=14),
    params=filters,
    user=st.integers(1, 3),
    limit=st.integers(1, 6),
    skip=st.integers(0, 15),
)
async def test_listing_matches_a_reference_and_pages_cover_everything_once(
    client: httpx.AsyncClient,
    app: FastAPI,
    data: list[dict[str, Any]],
    params: dict[str, Any],
    user: int,
    limit: int,
    skip: int,
) -> None:
    await empty_tables(app.state.engine, Base.metadata)
    stored = [
        {**row, "completed_at": NOW if row["status"] == "done" else None, "version": 1}
        for row in data
    ]
    ids = await insert_tasks(app, stored)
    rows = [Row(id=task_id, data=row) for task_id, row in zip(ids, data, strict=True)]
    expected = reference_listing(rows, params, user)

    response = await client.get(
        "/api/v1/tasks/", params={**query(params), "skip": skip, "limit": limit}, headers=auth(user)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(expected)
    assert (body["skip"], body["limit"]) == (skip, limit)
    assert [task["id"] for task in body["tasks"]] == expected[skip : skip + limit]

    walked: list[int] = []
    for offset in range(0, len(expected) + limit, limit):
        page = await client.get(
            "/api/v1/tasks",
            params={**query(params), "skip": offset, "limit": limit},
            headers=auth(user),
        )
        walked.extend(task["id"] for task in page.json()["tasks"])
    assert walked == expected

    # Keyset pages (next_cursor) cover the same listing, each row once, in the same order.
    by_cursor: list[int] = []
    cursor: str | None = None
    for _ in range(len(expected) + 1):
        cursor_params = {**query(params), "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = await client.get("/api/v1/tasks/", params=cursor_params, headers=auth(user))
        assert page.status_code == 200, page.text
        body = page.json()
        by_cursor.extend(task["id"] for task in body["tasks"])
        assert (body["total"], body["total_exact"]) == (len(expected), True)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert by_cursor == expected
