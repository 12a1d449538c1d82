"""Aggregate queries over tasks: every number is computed by PostgreSQL (FILTER / GROUP BY).

Compiled once per scope (one user's visible tasks, or every task) and executed on asyncpg, like
every task-service query."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, Date, bindparam, cast, func, select, true
from taskflow_kit.db import Statement, compile_statement

from task_service.tasks.models import Task, TaskPriority, TaskStatus, UserTaskVersion
from task_service.tasks.repository import USER_ID, visible_to

WEEK = timedelta(days=7)
NOW = bindparam("now", type_=Task.updated_at.type)
WEEK_AHEAD = bindparam("week_ahead", type_=Task.updated_at.type)
WEEK_AGO = bindparam("week_ago", type_=Task.updated_at.type)
SINCE = bindparam("since", type_=Date)


def _utc_date(column: Any) -> ColumnElement[date]:
    return cast(func.timezone("UTC", column), Date)


def _scope(system: bool) -> ColumnElement[bool]:
    return true() if system else visible_to(USER_ID)


def _counts(system: bool) -> Statement:
    """Totals by status and priority, overdue, due soon, recently completed, owners."""
    not_done = Task.status != TaskStatus.DONE
    columns = {
        "total": func.count(),
        **{f"status_{name}": func.count().filter(Task.status == name) for name in TaskStatus},
        **{f"priority_{name}": func.count().filter(Task.priority == name) for name in TaskPriority},
        "overdue": func.count().filter(not_done, Task.due_date < NOW),
        "due_next_7_days": func.count().filter(
            not_done, Task.due_date >= NOW, Task.due_date < WEEK_AHEAD
        ),
        "completed_last_7_days": func.count().filter(
            Task.status == TaskStatus.DONE, Task.completed_at >= WEEK_AGO
        ),
        "owners": func.count(func.distinct(Task.owner_id)),
    }
    return compile_statement(
        select(*(column.label(name) for name, column in columns.items())).where(_scope(system))
    )


def _per_day(column: Any, system: bool) -> Statement:
    day = _utc_date(column).label("day")
    return compile_statement(
        select(day, func.count().label("tasks"))
        .where(_scope(system), column.is_not(None), day >= SINCE)
        .group_by(day)
    )


# Indexed by `system` (False: one user's visible tasks; True: every task).
_COUNTS = (_counts(False), _counts(True))
_CREATED = (_per_day(Task.created_at, False), _per_day(Task.created_at, True))
_COMPLETED = (_per_day(Task.completed_at, False), _per_day(Task.completed_at, True))
_VERSION = compile_statement(
    select(UserTaskVersion.version).where(UserTaskVersion.user_id == USER_ID)
)


class AggregateRepository:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def version(self, user_id: int) -> int:
        """How many changes have touched the user's visible tasks (0 before the first)."""
        found = await _VERSION.fetchval(self.connection, user_id=user_id)
        return int(found or 0)

    async def counts(self, user_id: int | None, now: datetime) -> dict[str, int]:
        """Totals by status and priority, overdue, due soon, recently completed, owners."""
        row = await _COUNTS[user_id is None].fetchrow(
            self.connection, user_id=user_id, now=now, week_ahead=now + WEEK, week_ago=now - WEEK
        )
        assert row is not None  # an aggregate without GROUP BY always returns one row
        return dict(row.items())

    async def created_per_day(self, user_id: int | None, since: date) -> dict[date, int]:
        return await self._per_day(_CREATED, user_id, since)

    async def completed_per_day(self, user_id: int | None, since: date) -> dict[date, int]:
        return await self._per_day(_COMPLETED, user_id, since)

    async def _per_day(
        self, statements: tuple[Statement, Statement], user_id: int | None, since: date
    ) -> dict[date, int]:
        rows = await statements[user_id is None].fetch(
            self.connection, user_id=user_id, since=since
        )
        return {row["day"]: row["tasks"] for row in rows}
