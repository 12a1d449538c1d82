"""The project list's plan: one project's page in every order comes straight from the
project-led index of its sort key, with no sort of the project's tasks (the keys are the owner
indexes' own expressions, listing.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from task_service.aggregates.repository import AggregateRepository
from task_service.tasks.listing import ListShape, list_values
from task_service.tasks.schemas import TaskFilter
from taskflow_kit.db import compile_statement

pytestmark = pytest.mark.usefixtures("client")


INDEXES = {
    "created_at": "ix_task_project_created",
    "updated_at": "ix_task_project_updated",
    "priority": "ix_task_project_priority",
    "status": "ix_task_project_status",
    "title": "ix_task_project_title",
}


@pytest.mark.parametrize(
    ("sort_by", "sort_order", "index"),
    [
        *((field, order, index) for field, index in INDEXES.items() for order in ("asc", "desc")),
        ("due_date", "asc", "ix_task_project_due_asc"),
        ("due_date", "desc", "ix_task_project_due_desc"),
    ],
)
async def test_a_projects_page_is_read_from_its_index_without_sorting(
    client: httpx.AsyncClient, app: FastAPI, sort_by: str, sort_order: str, index: str
) -> None:
    async with app.state.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO project (name, owner_id, created_at, updated_at, version) "
                "SELECT 'p' || g, 1, now(), now(), 1 FROM generate_series(1, 200) g"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO project_member (project_id, user_id, role, added_at) "
                "SELECT id, 1, 'owner', now() FROM project"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO task (title, status, priority, tags, owner_id, project_id, "
                "created_at, updated_at, version) SELECT 't' || g, 'todo', 'medium', '{}', 1, "
                "1 + g % 200, now() - g * interval '1 second', now(), 1 "
                "FROM generate_series(1, 40000) g"
            )
        )
        await connection.execute(text("ANALYZE task"))
        await connection.execute(text("ANALYZE project_member"))
    task_filter = TaskFilter(project_id=1, sort_by=sort_by, sort_order=sort_order)
    page = compile_statement(ListShape.of(task_filter).page_ids())
    values = list_values(task_filter, 1, datetime.now(UTC))
    async with app.state.pool.acquire() as connection:
        plan = "\n".join(
            row[0] for row in await connection.fetch("EXPLAIN " + page.sql, *page.args(values))
        )
    assert index in plan, plan
    assert "Sort" not in plan, plan


def _most_rows(node: dict[str, Any]) -> int:
    """The most rows any node of a plan produced, leaving out the reads of the caller's
    memberships: a bitmap scan of `project_member`'s index counts the entries of rows that
    earlier tests deleted (not yet vacuumed), which says nothing of the board."""
    if node.get("Relation Name") == "project_member" or node.get("Index Name", "").startswith(
        ("pk_project_member", "ix_project_member")
    ):
        return 0
    return max(
        [int(node.get("Actual Rows", 0))] + [_most_rows(child) for child in node.get("Plans", [])]
    )


@pytest.mark.parametrize("sort_by", ["created_at", "priority", "due_date", "title"])
async def test_a_members_whole_list_reads_a_page_per_project_not_the_board(
    client: httpx.AsyncClient, app: FastAPI, sort_by: str
) -> None:
    async with app.state.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO project (name, owner_id, created_at, updated_at, version) "
                "SELECT 'p' || g, 1, now(), now(), 1 FROM generate_series(1, 3) g"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO project_member (project_id, user_id, role, added_at) "
                "SELECT id, 1, 'owner', now() FROM project"
            )
        )
        # One board of 30,000 tasks, two small ones, and the member's own tasks.
        await connection.execute(
            text(
                "INSERT INTO task (title, status, priority, tags, owner_id, project_id, "
                "created_at, updated_at, version) SELECT 't' || g, 'todo', "
                "(ARRAY['low', 'medium', 'high', 'urgent'])[1 + g % 4], '{}', 1 + g % 5, "
                "CASE WHEN g <= 30000 THEN (SELECT min(id) FROM project) "
                "WHEN g <= 30100 THEN (SELECT max(id) FROM project) END, "
                "now() - g * interval '1 second', now(), 1 FROM generate_series(1, 30200) g"
            )
        )
        await connection.execute(text("ANALYZE task"))
        await connection.execute(text("ANALYZE project_member"))
    task_filter = TaskFilter(sort_by=sort_by, sort_order="desc")
    page = compile_statement(ListShape.of(task_filter).page_ids())
    values = list_values(task_filter, 1, datetime.now(UTC))
    async with app.state.pool.acquire() as connection:
        [row] = await connection.fetch(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + page.sql, *page.args(values)
        )
    # The pool may decode json already (a codec) or not.
    explained = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    plan = explained[0]["Plan"]
    # A page of 20 (+1) from each branch and each project: never the 30,000-task board.
    assert _most_rows(plan) <= 200, json.dumps(plan, indent=1)


def _seq_scans_of_task(node: dict[str, Any]) -> int:
    own = int(node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == "task")
    return own + sum(_seq_scans_of_task(child) for child in node.get("Plans", ()))


def _task_rows(node: dict[str, Any]) -> int:
    """Rows of `task` the plan's scans returned or filtered away, over all their loops."""
    own = 0
    if node.get("Relation Name") == "task":
        read = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        own = int(read * node.get("Actual Loops", 1))
    return own + sum(_task_rows(child) for child in node.get("Plans", ()))


@pytest.mark.parametrize(("user", "budget"), [(9, 0), (1, 3_500)])
async def test_a_filtered_lists_count_reads_the_callers_projects_only(
    client: httpx.AsyncClient, app: FastAPI, user: int, budget: int
) -> None:
    """The `total` of a filtered list counts the projects' tasks project by project: beside a
    board of 20,000 tasks among 60,000 personal ones, a non-member's count reads none of the
    board (the `project_id = ANY(...)` form had the planner scan every task), a member's stops
    at the cap."""
    async with app.state.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO project (name, owner_id, created_at, updated_at, version) "
                "VALUES ('board', 1, now(), now(), 1)"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO project_member (project_id, user_id, role, added_at) "
                "SELECT id, 1, 'owner', now() FROM project"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO task (title, status, priority, tags, owner_id, project_id, "
                "created_at, updated_at, completed_at, version) SELECT 't' || g, "
                "(ARRAY['todo', 'in_progress', 'done'])[1 + g % 3], 'medium', '{}', 2 + g % 7, "
                "CASE WHEN g > 60000 THEN (SELECT id FROM project) END, "
                "now() - g * interval '1 second', now(), "
                "CASE WHEN g % 3 = 2 THEN now() END, 1 FROM generate_series(1, 80000) g"
            )
        )
        await connection.execute(text("ANALYZE task"))
        await connection.execute(text("ANALYZE project_member"))
    task_filter = TaskFilter(statuses=["done"])
    total = compile_statement(ListShape.of(task_filter).total())
    values = list_values(task_filter, user, datetime.now(UTC))
    async with app.state.pool.acquire() as connection:
        [row] = await connection.fetch(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + total.sql, *total.args(values)
        )
    explained = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    plan = explained[0]["Plan"]
    assert _seq_scans_of_task(plan) == 0, json.dumps(plan, indent=1)
    assert _task_rows(plan) <= budget, json.dumps(plan, indent=1)


class _Recording:
    """An asyncpg connection that remembers every statement run on it, with its arguments."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.connection, name)
        if name not in ("fetch", "fetchrow", "fetchval", "execute"):
            return method  # not a statement (the connection's plan setting, its transaction)

        async def recorded(sql: str, *args: Any) -> Any:
            self.statements.append((sql, args))
            return await method(sql, *args)

        return recorded


# A member's windows statement reads the board's open and completed tasks in two subqueries
# (a project's statistics are counts over its rows), never the 60,000 personal tasks.
@pytest.mark.parametrize(("user", "budget"), [(9, 0), (1, 50_000)])
async def test_statistics_read_the_callers_projects_only(
    client: httpx.AsyncClient, app: FastAPI, user: int, budget: int
) -> None:
    """A user's aggregates beside a board of 20,000 tasks among 60,000 personal ones: a
    non-member's read none of the board (`project_id = ANY(...)` had the planner scan every
    task), a member's read the board's rows, not everyone's."""
    async with app.state.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO project (name, owner_id, created_at, updated_at, version) "
                "VALUES ('board', 1, now(), now(), 1)"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO project_member (project_id, user_id, role, added_at) "
                "SELECT id, 1, 'owner', now() FROM project"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO task (title, status, priority, tags, owner_id, project_id, "
                "due_date, created_at, updated_at, completed_at, version) SELECT 't' || g, "
                "(ARRAY['todo', 'in_progress', 'done'])[1 + g % 3], 'medium', '{}', 2 + g % 7, "
                "CASE WHEN g > 60000 THEN (SELECT id FROM project) END, "
                "now() + (g % 20 - 10) * interval '1 day', now() - g * interval '1 second', "
                "now(), CASE WHEN g % 3 = 2 THEN now() END, 1 FROM generate_series(1, 80000) g"
            )
        )
        await connection.execute(text("ANALYZE task"))
        await connection.execute(text("ANALYZE project_member"))
    async with app.state.pool.acquire() as connection:
        recording = _Recording(connection)
        repository = AggregateRepository(recording)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        await repository.counts("user", now, user_id=user)
        since = now.date() - timedelta(days=29)
        await repository.created_per_day("user", since, user_id=user)
        await repository.completed_per_day("user", since, user_id=user)
        assert len(recording.statements) >= 5
        for sql, args in recording.statements:
            [row] = await connection.fetch("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
            explained = json.loads(row[0]) if isinstance(row[0], str) else row[0]
            plan = explained[0]["Plan"]
            assert _seq_scans_of_task(plan) == 0, (sql, json.dumps(plan, indent=1))
            assert _task_rows(plan) <= budget, (sql, _task_rows(plan))
