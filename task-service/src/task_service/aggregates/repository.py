"""Aggregate queries over tasks: every number is computed by PostgreSQL, none by counting a
user's whole task list.

Counts by status and priority come from `task_tally` (running counts the database keeps), the
time-windowed ones from index ranges: a user with a million tasks costs what one with a
hundred does, give or take the rows inside the windows. Compiled once per scope (one user's
visible tasks, or every task) and executed on asyncpg, like every task-service query.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    union_all,
)
from taskflow_kit.db import Statement, compile_statement

from task_service.aggregates.models import TaskTally
from task_service.tasks.models import NOT_DONE, Task, TaskPriority, TaskStatus, UserTaskVersion
from task_service.tasks.repository import USER_ID

WEEK = timedelta(days=7)
NOW = bindparam("now", type_=Task.updated_at.type)
WEEK_AHEAD = bindparam("week_ahead", type_=Task.updated_at.type)
WEEK_AGO = bindparam("week_ago", type_=Task.updated_at.type)
SINCE = bindparam("since", type_=Task.updated_at.type)
# A user's tally rows are folded back into one per group once there are more than this.
COMPACT_AFTER = 64


def _utc_date(column: Any) -> ColumnElement[date]:
    return cast(func.timezone("UTC", column), Date)


def _visible(system: bool, *columns: Any, where: Any = ()) -> Any:
    """`columns` of the tasks the user can see (every task for `system`) matching `where`.

    Visibility (owner or assignee) is a UNION ALL of the owned tasks and those assigned by
    someone else, so each branch is a range of an index led by its user column instead of an OR
    that no index serves.
    """
    if system:
        return select(*columns).where(*where).subquery("visible")
    owned = select(*columns).where(Task.owner_id == USER_ID, *where)
    assigned = select(*columns).where(Task.assignee_id == USER_ID, Task.owner_id != USER_ID, *where)
    return union_all(owned, assigned).subquery("visible")


def _tallied(system: bool) -> Statement:
    """Running counts by owned/assigned, status and priority (with how many rows hold them)."""
    scope = TaskTally.owned.is_(True) if system else TaskTally.user_id == USER_ID
    return compile_statement(
        select(
            TaskTally.owned,
            TaskTally.status,
            TaskTally.priority,
            func.sum(TaskTally.tasks).label("tasks"),
            func.count().label("rows"),
        )
        .where(scope)
        .group_by(TaskTally.owned, TaskTally.status, TaskTally.priority)
    )


def _windows(system: bool) -> Statement:
    """Overdue and due in the next 7 days (open tasks), completed in the last 7 days."""
    due = _visible(system, Task.due_date, where=(NOT_DONE, Task.due_date < WEEK_AHEAD))
    completed = _visible(system, Task.id, where=(Task.completed_at >= WEEK_AGO,))
    return compile_statement(
        select(
            func.count().filter(due.c.due_date < NOW).label("overdue"),
            func.count().filter(due.c.due_date >= NOW).label("due_next_7_days"),
            select(func.count()).select_from(completed).scalar_subquery().label("completed"),
        ).select_from(due)
    )


def _owners(system: bool) -> Statement:
    """Distinct owners: for a user, of the tasks others assigned them (the user is added when
    they own any); for the system, of every task (from the running counts)."""
    if system:
        owners = (
            select(TaskTally.user_id)
            .where(TaskTally.owned.is_(True))
            .group_by(TaskTally.user_id)
            .having(func.sum(TaskTally.tasks) > 0)
            .subquery()
        )
        return compile_statement(select(func.count()).select_from(owners))
    return compile_statement(
        select(func.count(func.distinct(Task.owner_id))).where(
            Task.assignee_id == USER_ID, Task.owner_id != USER_ID
        )
    )


def _per_day(column: Any, system: bool) -> Statement:
    # A range on the timestamp itself (indexed per owner); the UTC day is computed on the rows
    # inside it. SINCE is midnight UTC of the first day.
    rows = _visible(system, _utc_date(column).label("day"), where=(column >= SINCE,))
    statement: Select[Any] = select(rows.c.day, func.count().label("tasks")).group_by(rows.c.day)
    return compile_statement(statement)


def _compact() -> Statement:
    """Fold a user's tally rows into one per group (same sums). Rows a concurrent writer adds
    meanwhile are not in this statement's snapshot and stay; a concurrent compaction waits for
    this one, then finds the rows it would fold gone."""
    folded = (
        delete(TaskTally)
        .where(TaskTally.user_id == USER_ID)
        .returning(TaskTally.owned, TaskTally.status, TaskTally.priority, TaskTally.tasks)
        .cte("folded")
    )
    sums = (
        select(
            USER_ID, folded.c.owned, folded.c.status, folded.c.priority, func.sum(folded.c.tasks)
        )
        .group_by(folded.c.owned, folded.c.status, folded.c.priority)
        .having(func.sum(folded.c.tasks) != 0)
    )
    columns = ["user_id", "owned", "status", "priority", "tasks"]
    return compile_statement(insert(TaskTally).from_select(columns, sums))


# Indexed by `system` (False: one user's visible tasks; True: every task).
_TALLIED = (_tallied(False), _tallied(True))
_WINDOWS = (_windows(False), _windows(True))
_OWNERS = (_owners(False), _owners(True))
_CREATED = (_per_day(Task.created_at, False), _per_day(Task.created_at, True))
_COMPLETED = (_per_day(Task.completed_at, False), _per_day(Task.completed_at, True))
_COMPACT = _compact()
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
        system = user_id is None
        counts = dict.fromkeys(
            ["total"]
            + [f"status_{name}" for name in TaskStatus]
            + [f"priority_{name}" for name in TaskPriority],
            0,
        )
        groups = await _TALLIED[system].fetch(self.connection, user_id=user_id)
        for group in groups:
            tasks = int(group["tasks"])
            counts["total"] += tasks
            counts[f"status_{group['status']}"] += tasks
            counts[f"priority_{group['priority']}"] += tasks
        if user_id is not None and sum(group["rows"] for group in groups) > COMPACT_AFTER:
            await _COMPACT.execute(self.connection, user_id=user_id)
        windows = await _WINDOWS[system].fetchrow(
            self.connection, user_id=user_id, now=now, week_ahead=now + WEEK, week_ago=now - WEEK
        )
        assert windows is not None  # a SELECT of scalar subqueries returns one row
        counts["overdue"] = windows["overdue"]
        counts["due_next_7_days"] = windows["due_next_7_days"]
        counts["completed_last_7_days"] = windows["completed"]
        owners = int(await _OWNERS[system].fetchval(self.connection, user_id=user_id))
        owns_any = any(group["owned"] and group["tasks"] > 0 for group in groups)
        counts["owners"] = owners + int(not system and owns_any)
        return counts

    async def created_per_day(self, user_id: int | None, since: date) -> dict[date, int]:
        return await self._per_day(_CREATED, user_id, since)

    async def completed_per_day(self, user_id: int | None, since: date) -> dict[date, int]:
        return await self._per_day(_COMPLETED, user_id, since)

    async def _per_day(
        self, statements: tuple[Statement, Statement], user_id: int | None, since: date
    ) -> dict[date, int]:
        midnight = datetime(since.year, since.month, since.day, tzinfo=UTC)
        rows = await statements[user_id is None].fetch(
            self.connection, user_id=user_id, since=midnight
        )
        return {row["day"]: row["tasks"] for row in rows}
