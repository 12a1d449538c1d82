"""Aggregate queries over tasks: every number is computed by PostgreSQL, none by counting a
user's whole task list.

Counts of personal tasks by status and priority come from `task_tally` (running counts the
database keeps), those of projects' tasks are counted per project (GROUP BY over the project
index), the time-windowed ones from index ranges: a user with a million personal tasks costs
what one with a hundred does, give or take the rows inside the windows and their projects'
tasks. Compiled once per scope (one user's visible tasks, one project's tasks as a member sees
them, or every task) and executed on asyncpg, like every task-service query.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

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
    literal_column,
    select,
    true,
    union,
    union_all,
)
from taskflow_kit.db import Statement, compile_statement

from task_service.aggregates.models import TaskTally
from task_service.projects.models import ProjectMember
from task_service.projects.repository import is_member
from task_service.tasks.models import NOT_DONE, Task, TaskPriority, TaskStatus, UserTaskVersion
from task_service.tasks.repository import PROJECT_ID, USER_ID

WEEK = timedelta(days=7)
NOW = bindparam("now", type_=Task.updated_at.type)
WEEK_AHEAD = bindparam("week_ahead", type_=Task.updated_at.type)
WEEK_AGO = bindparam("week_ago", type_=Task.updated_at.type)
SINCE = bindparam("since", type_=Task.updated_at.type)
# A user's tally rows are folded back into one per group once there are more than this.
COMPACT_AFTER = 64

# user: the caller's visible tasks; project: one project's tasks, counted only for a member (the
# membership is part of the statement); system: every task.
Scope = Literal["user", "project", "system"]
SCOPES: tuple[Scope, ...] = ("user", "project", "system")


def _utc_date(column: Any) -> ColumnElement[date]:
    return cast(func.timezone("UTC", column), Date)


def _projects(scope: Scope) -> list[ColumnElement[bool]]:
    """Which projects' tasks the project and system scopes hold (the running counts keep
    none of them); a user's are read by `_project_rows`."""
    if scope == "system":
        return [Task.project_id.is_not(None)]
    return [Task.project_id == PROJECT_ID, is_member(PROJECT_ID, USER_ID)]


def _project_rows(scope: Scope, *columns: Any, where: Any = ()) -> Select[Any]:
    """`columns` of the scope's projects' tasks matching `where`.

    A user's are read project by project (a LATERAL over their memberships, each project a
    range of its project-led index), as the task list reads them: `project_id = ANY(an array
    the planner cannot see)` or `IN (their memberships)` left the planner to guess, and with
    one 100k-task project in the database it scanned that project's index (or every task)
    for users in no project at all (docs/performance.md, issue 19)."""
    if scope != "user":
        return select(*columns).where(*_projects(scope), *where)
    mine = select(ProjectMember.project_id).where(ProjectMember.user_id == USER_ID).subquery("mine")
    # OFFSET 0 keeps the subquery a subquery: PostgreSQL flattens a plain LATERAL one into
    # the join it replaced, and the guess comes back.
    rows = (
        select(*columns)
        .where(Task.project_id == mine.c.project_id, *where)
        .offset(literal_column("0"))
        .lateral("in_project")
    )
    return select(*rows.c).select_from(mine).join(rows, true())


def _visible(scope: Scope, *columns: Any, where: Any = ()) -> Any:
    """`columns` of the scope's tasks matching `where`.

    A user's visibility is a UNION ALL of their personal tasks, those assigned to them by
    someone else and their projects' tasks, so each branch is a range of an index led by its
    user or project column instead of an OR that no index serves.
    """
    if scope == "system":
        return select(*columns).where(*where).subquery("visible")
    projects = _project_rows(scope, *columns, where=where)
    if scope == "project":
        return projects.subquery("visible")
    personal = Task.project_id.is_(None)
    owned = select(*columns).where(Task.owner_id == USER_ID, personal, *where)
    assigned = select(*columns).where(
        Task.assignee_id == USER_ID, Task.owner_id != USER_ID, personal, *where
    )
    return union_all(owned, assigned, projects).subquery("visible")


def _tallied(system: bool) -> Statement:
    """Running counts of personal tasks by owned/assigned, status and priority (with how many
    rows hold them)."""
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


def _project_groups(scope: Scope) -> Statement:
    """The scope's projects' tasks by status and priority."""
    rows = _project_rows(scope, Task.status, Task.priority).subquery("projects")
    return compile_statement(
        select(rows.c.status, rows.c.priority, func.count().label("tasks")).group_by(
            rows.c.status, rows.c.priority
        )
    )


def _windows(scope: Scope) -> Statement:
    """Overdue and due in the next 7 days (open tasks), completed in the last 7 days."""
    due = _visible(scope, Task.due_date, where=(NOT_DONE, Task.due_date < WEEK_AHEAD))
    completed = _visible(scope, Task.id, where=(Task.completed_at >= WEEK_AGO,))
    return compile_statement(
        select(
            func.count().filter(due.c.due_date < NOW).label("overdue"),
            func.count().filter(due.c.due_date >= NOW).label("due_next_7_days"),
            select(func.count()).select_from(completed).scalar_subquery().label("completed"),
        ).select_from(due)
    )


def _owners(scope: Scope) -> Statement:
    """Distinct owners. For a user: `others`, the owners other than the user of the tasks
    assigned to them and of their projects' tasks, and `own` whether the user owns any of their
    projects' tasks (their personal ones are in the running counts). For the system: of every
    task (the running counts' owners and the projects' tasks' owners). For a project: of its
    tasks."""
    if scope == "system":
        owners = union(
            select(TaskTally.user_id.label("owner_id"))
            .where(TaskTally.owned.is_(True))
            .group_by(TaskTally.user_id)
            .having(func.sum(TaskTally.tasks) > 0),
            select(Task.owner_id).where(*_projects(scope)),
        ).subquery()
        return compile_statement(select(func.count().label("others")).select_from(owners))
    if scope == "project":
        return compile_statement(
            select(func.count(func.distinct(Task.owner_id)).label("others")).where(
                *_projects(scope)
            )
        )
    rows = union_all(
        select(Task.owner_id).where(
            Task.assignee_id == USER_ID, Task.owner_id != USER_ID, Task.project_id.is_(None)
        ),
        _project_rows(scope, Task.owner_id),
    ).subquery()
    return compile_statement(
        select(
            func.count(func.distinct(rows.c.owner_id))
            .filter(rows.c.owner_id != USER_ID)
            .label("others"),
            func.coalesce(func.bool_or(rows.c.owner_id == USER_ID), False).label("own"),
        )
    )


def _per_day(column: Any, scope: Scope) -> Statement:
    # A range on the timestamp itself (indexed per owner); the UTC day is computed on the rows
    # inside it. SINCE is midnight UTC of the first day.
    rows = _visible(scope, _utc_date(column).label("day"), where=(column >= SINCE,))
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


# Indexed by `system` (False: one user's personal tasks; True: every personal task).
_TALLIED = (_tallied(False), _tallied(True))
_PROJECT_GROUPS = {scope: _project_groups(scope) for scope in SCOPES}
_WINDOWS = {scope: _windows(scope) for scope in SCOPES}
_OWNERS = {scope: _owners(scope) for scope in SCOPES}
_CREATED = {scope: _per_day(Task.created_at, scope) for scope in SCOPES}
_COMPLETED = {scope: _per_day(Task.completed_at, scope) for scope in SCOPES}
_COMPACT = _compact()
_IS_MEMBER = compile_statement(select(is_member(PROJECT_ID, USER_ID)))
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

    async def is_member(self, project_id: int, user_id: int) -> bool:
        return bool(
            await _IS_MEMBER.fetchval(self.connection, project_id=project_id, user_id=user_id)
        )

    async def counts(
        self, scope: Scope, now: datetime, *, user_id: int | None, project_id: int | None = None
    ) -> dict[str, int]:
        """Totals by status and priority, overdue, due soon, recently completed, owners."""
        values = {"user_id": user_id, "project_id": project_id}
        counts = dict.fromkeys(
            ["total"]
            + [f"status_{name}" for name in TaskStatus]
            + [f"priority_{name}" for name in TaskPriority],
            0,
        )
        groups: list[asyncpg.Record] = []
        if scope != "project":
            system = scope == "system"
            groups = await _TALLIED[system].fetch(self.connection, user_id=user_id)
            if not system and sum(group["rows"] for group in groups) > COMPACT_AFTER:
                await _COMPACT.execute(self.connection, user_id=user_id)
        in_projects = await _PROJECT_GROUPS[scope].fetch(self.connection, **values)
        for group in [*groups, *in_projects]:
            tasks = int(group["tasks"])
            counts["total"] += tasks
            counts[f"status_{group['status']}"] += tasks
            counts[f"priority_{group['priority']}"] += tasks
        windows = await _WINDOWS[scope].fetchrow(
            self.connection, **values, now=now, week_ahead=now + WEEK, week_ago=now - WEEK
        )
        assert windows is not None  # a SELECT of scalar subqueries returns one row
        counts["overdue"] = windows["overdue"]
        counts["due_next_7_days"] = windows["due_next_7_days"]
        counts["completed_last_7_days"] = windows["completed"]
        owners = await _OWNERS[scope].fetchrow(self.connection, **values)
        assert owners is not None  # an aggregate without GROUP BY returns one row
        owns_personal = any(group["owned"] and group["tasks"] > 0 for group in groups)
        owns_any = scope == "user" and (owns_personal or bool(owners["own"]))
        counts["owners"] = int(owners["others"]) + int(owns_any)
        return counts

    async def created_per_day(
        self, scope: Scope, since: date, *, user_id: int | None, project_id: int | None = None
    ) -> dict[date, int]:
        return await self._per_day(_CREATED[scope], since, user_id, project_id)

    async def completed_per_day(
        self, scope: Scope, since: date, *, user_id: int | None, project_id: int | None = None
    ) -> dict[date, int]:
        return await self._per_day(_COMPLETED[scope], since, user_id, project_id)

    async def _per_day(
        self, statement: Statement, since: date, user_id: int | None, project_id: int | None
    ) -> dict[date, int]:
        midnight = datetime(since.year, since.month, since.day, tzinfo=UTC)
        rows = await statement.fetch(
            self.connection, user_id=user_id, project_id=project_id, since=midnight
        )
        return {row["day"]: row["tasks"] for row in rows}
