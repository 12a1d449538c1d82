"""Queries on tasks themselves: read (with their dependencies), list, create, change, delete.

Every statement is built with SQLAlchemy once, at import or the first time its shape is needed
(`compile_statement`), and executed on the request's asyncpg connection: a request pays neither
SQLAlchemy's session and compilation nor a `PREPARE` (asyncpg caches the prepared statement per
connection). Rows come back as `TaskRead`, the shape the API shows, with no second pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.orm import aliased
from taskflow_kit.db import Statement, compile_statement, planned_per_call

from task_service.projects.repository import member_project_ids
from task_service.tasks import listing
from task_service.tasks.cursor import Position
from task_service.tasks.models import Task, TaskDependency, TaskPriority, TaskStatus
from task_service.tasks.schemas import TaskFilter, TaskRead

TASK_ID = bindparam("task_id", type_=BigInteger)
USER_ID = bindparam("user_id", type_=BigInteger)
TASK_IDS = bindparam("task_ids", type_=ARRAY(BigInteger))
PROJECT_ID = bindparam("project_id", type_=BigInteger)
NOW = bindparam("now", type_=Task.updated_at.type)


def visible_to(user_id: ColumnElement[int] | int) -> ColumnElement[bool]:
    """A personal task is visible to its owner and its assignee; a project's task to the
    project's members, and only to them. Checked in every statement that reads a task."""
    return or_(
        and_(Task.project_id.is_(None), or_(Task.owner_id == user_id, Task.assignee_id == user_id)),
        Task.project_id == any_(member_project_ids(user_id)),
    )


# Selected beside a task (correlated to the statement's `task` row), so a task and its
# dependencies come back in one query: the ids it depends on, ascending (NULL when none), and
# whether any of them is not done. The edge and the dependency are aliased so that a statement
# that itself joins `task_dependency` does not correlate them away.
_EDGE = aliased(TaskDependency, name="edge")
_DEPENDENCY = aliased(Task, name="dependency")
DEPENDS_ON_IDS = (
    select(func.array_agg(aggregate_order_by(_EDGE.depends_on_id, _EDGE.depends_on_id)))
    .where(_EDGE.task_id == Task.id)
    .correlate(Task)
    .scalar_subquery()
)
BLOCKED = (
    select(_EDGE.task_id)
    .join(_DEPENDENCY, _DEPENDENCY.id == _EDGE.depends_on_id)
    .where(_EDGE.task_id == Task.id, _DEPENDENCY.status != TaskStatus.DONE)
    .correlate(Task)
    .exists()
)
TASK_COLUMNS = (
    Task.id,
    Task.title,
    Task.description,
    Task.status,
    Task.priority,
    Task.due_date,
    Task.tags,
    Task.owner_id,
    Task.assignee_id,
    Task.project_id,
    Task.created_at,
    Task.updated_at,
    Task.completed_at,
    Task.version,
)
READ_COLUMNS = (*TASK_COLUMNS, DEPENDS_ON_IDS.label("depends_on"), BLOCKED.label("blocked"))


def task_read(row: asyncpg.Record) -> TaskRead:
    """A row of `READ_COLUMNS` (or `TASK_COLUMNS`: no dependencies yet) as the API shows it.
    The database's values are already valid, so the model is built without validating."""
    status = TaskStatus(row["status"])
    fields = dict(row.items())
    fields["status"] = status
    fields["priority"] = TaskPriority(row["priority"])
    fields["is_completed"] = status is TaskStatus.DONE
    fields["tags"] = list(row["tags"] or ())
    fields["depends_on"] = list(fields.get("depends_on") or ())
    fields["blocked"] = bool(fields.get("blocked"))
    return TaskRead.model_construct(**fields)


_GET_VISIBLE = compile_statement(
    select(*READ_COLUMNS).where(Task.id == TASK_ID, visible_to(USER_ID))
)
_GET_VISIBLE_LOCKED = compile_statement(
    select(*READ_COLUMNS).where(Task.id == TASK_ID, visible_to(USER_ID)).with_for_update(of=Task)
)
_GET_MANY = compile_statement(
    select(*READ_COLUMNS).where(Task.id == any_(TASK_IDS)).order_by(Task.id)
)
_SELECT_VISIBLE_IDS = select(Task.id, Task.project_id).where(
    Task.id == any_(TASK_IDS), visible_to(USER_ID)
)
_VISIBLE_IDS = compile_statement(_SELECT_VISIBLE_IDS.with_for_update(read=True, key_share=True))
_VISIBLE_IDS_UNLOCKED = compile_statement(_SELECT_VISIBLE_IDS)
_INSERT = compile_statement(
    insert(Task)
    .values(
        title=bindparam("v_title"),
        description=bindparam("v_description"),
        status=bindparam("v_status"),
        priority=bindparam("v_priority"),
        due_date=bindparam("v_due_date"),
        tags=bindparam("v_tags"),
        owner_id=bindparam("v_owner_id"),
        assignee_id=bindparam("v_assignee_id"),
        project_id=bindparam("v_project_id", type_=BigInteger),
        created_at=NOW,
        updated_at=NOW,
        completed_at=bindparam("v_completed_at"),
        version=1,
    )
    .returning(*TASK_COLUMNS)
)
_DEPENDENT_IDS = compile_statement(
    select(TaskDependency.task_id)
    .where(
        TaskDependency.depends_on_id == any_(TASK_IDS),
        TaskDependency.task_id != func.all(TASK_IDS),
    )
    .distinct()
    .order_by(TaskDependency.task_id)
)
# Personal tasks only: a project's tasks belong to the project, whoever created them.
_OWNED_IDS = compile_statement(
    select(Task.id).where(Task.owner_id == USER_ID, Task.project_id.is_(None)).order_by(Task.id)
)


def _unassign(*conditions: ColumnElement[bool]) -> Statement:
    return compile_statement(
        update(Task)
        .where(Task.assignee_id == USER_ID, *conditions)
        .values(assignee_id=None, updated_at=NOW, version=Task.version + 1)
        .returning(*READ_COLUMNS)
    )


_UNASSIGN = _unassign()
_UNASSIGN_IN_PROJECT = _unassign(Task.project_id == PROJECT_ID)
_UNASSIGN_FROM_PROJECTS = _unassign(Task.project_id.is_not(None))
# Tasks that depend on deleted ones get a new version: their `depends_on` changes.
_TOUCH_DEPENDENTS = compile_statement(
    update(Task)
    .where(
        Task.id.in_(
            select(TaskDependency.task_id).where(TaskDependency.depends_on_id == any_(TASK_IDS))
        ),
        Task.id != func.all(TASK_IDS),
    )
    .values(version=Task.version + 1, updated_at=NOW)
    .returning(Task.id)
)
_DELETE = compile_statement(delete(Task).where(Task.id == any_(TASK_IDS)))
# Lock order for writes that lock several tasks: a dependent before its dependencies (a
# completion locks its task, then share-locks what it depends on), among tasks of one kind
# ascending ids, and a task before its edges. A deletion therefore locks the tasks that depend
# on the deleted ones, in ascending order, before it locks the deleted ones
# (`_GET_VISIBLE_LOCKED`, `_DELETE`, whose cascade deletes their edges); an edge removal locks
# its task before it deletes the edge.
_DEPENDENT = aliased(Task, name="dependent")


def _lock_dependents(*, visible: bool) -> Statement:
    deleted: ColumnElement[bool] = TaskDependency.depends_on_id == any_(TASK_IDS)
    if visible:  # only through tasks the caller may see: nobody locks through one they cannot
        deleted = TaskDependency.depends_on_id.in_(
            select(Task.id).where(Task.id == any_(TASK_IDS), visible_to(USER_ID))
        )
    return compile_statement(
        select(_DEPENDENT.id)
        .where(
            _DEPENDENT.id.in_(select(TaskDependency.task_id).where(deleted)),
            _DEPENDENT.id != func.all(TASK_IDS),
        )
        .order_by(_DEPENDENT.id)
        .with_for_update(of=_DEPENDENT, key_share=True)  # FOR NO KEY UPDATE
    )


_LOCK_DEPENDENTS_OF_VISIBLE = _lock_dependents(visible=True)
_LOCK_DEPENDENTS = _lock_dependents(visible=False)

UPDATABLE = frozenset(
    {
        "title",
        "description",
        "status",
        "priority",
        "due_date",
        "tags",
        "assignee_id",
        "updated_at",
        "completed_at",
    }
)


@lru_cache(maxsize=len(UPDATABLE) ** 3)
def _update_statement(columns: tuple[str, ...]) -> Statement:
    """`UPDATE task SET <columns>, version = version + 1 ... RETURNING` the new row, compiled
    once per set of columns (a handful of sets occur)."""
    return compile_statement(
        update(Task)
        .where(Task.id == TASK_ID)
        .values(
            {
                **{Task.__table__.c[name]: bindparam(f"v_{name}") for name in columns},
                Task.__table__.c.version: Task.version + 1,
            }
        )
        .returning(*READ_COLUMNS)
    )


async def listing_shape(
    connection: asyncpg.Connection, task_filter: TaskFilter, values: dict[str, Any]
) -> listing.ListShape:
    """The listing's shape as run: for a search among the caller's own tasks, counting by
    walking them or by the term's keys, as `listing.DENSITY_PROBE` finds the term's density."""
    shape = listing.ListShape.of(task_filter)
    if not shape.counts_by_density:
        return shape
    density = await listing.DENSITY_PROBE.fetchrow(connection, **values)
    assert density is not None  # a SELECT of scalar subqueries returns one row
    return shape.counts_by_walking(density["matched"], int(density["owned"]))


@dataclass(frozen=True, slots=True)
class TaskPage:
    """A page of tasks, the total (a lower bound unless `total_exact`), and where the next
    page starts (None: this is the last)."""

    tasks: list[TaskRead]
    total: int
    total_exact: bool
    next_position: Position | None


class TaskRepository:
    """Tasks on one asyncpg connection (the request's, in its transaction when it writes)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def get_visible(
        self, task_id: int, user_id: int, *, lock: bool = False
    ) -> TaskRead | None:
        """The task (with its dependencies) if `user_id` may see it (`visible_to`); `lock`
        takes the task's row lock."""
        statement = _GET_VISIBLE_LOCKED if lock else _GET_VISIBLE
        row = await statement.fetchrow(self.connection, task_id=task_id, user_id=user_id)
        return None if row is None else task_read(row)

    async def get_many(self, task_ids: Sequence[int]) -> list[TaskRead]:
        rows = await _GET_MANY.fetch(self.connection, task_ids=list(task_ids))
        return [task_read(row) for row in rows]

    async def visible_ids(
        self, task_ids: Sequence[int], user_id: int, *, lock: bool = True
    ) -> dict[int, int | None]:
        """Which of `task_ids` the user may see, each with its project (None: personal).
        `lock`: key-share locked so they cannot vanish before this transaction's edges to them
        are committed; without it, the edge's foreign key finds a task deleted meanwhile."""
        statement = _VISIBLE_IDS if lock else _VISIBLE_IDS_UNLOCKED
        rows = await statement.fetch(self.connection, task_ids=list(task_ids), user_id=user_id)
        return {row[0]: row[1] for row in rows}

    async def insert(self, values: Mapping[str, Any], now: datetime) -> TaskRead:
        """A new task (version 1) from column values; it has no dependencies yet."""
        fields = {f"v_{name}": value for name, value in values.items()}
        row = await _INSERT.fetchrow(self.connection, now=now, **fields)
        assert row is not None  # INSERT ... RETURNING always returns the row
        return task_read(row)

    async def update(self, task_id: int, values: Mapping[str, Any]) -> TaskRead:
        """Apply `values` and bump the version (the caller holds the row lock); the new row
        comes back with its dependencies."""
        columns = tuple(sorted(values))
        unknown = set(columns) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        fields = {f"v_{name}": values[name] for name in columns}
        row = await _update_statement(columns).fetchrow(self.connection, task_id=task_id, **fields)
        assert row is not None  # the caller holds the row lock: it cannot have gone
        return task_read(row)

    async def delete(self, task_ids: Sequence[int], now: datetime) -> list[int]:
        """Delete tasks (their edges cascade); tasks that depended on them get a new version
        because their `depends_on` changed: their ids come back, ascending."""
        if not task_ids:
            return []
        touched = await _TOUCH_DEPENDENTS.fetch(self.connection, task_ids=list(task_ids), now=now)
        await _DELETE.execute(self.connection, task_ids=list(task_ids))
        return sorted(row[0] for row in touched)

    async def lock_dependents(self, task_ids: Sequence[int], *, visible_to: int | None) -> None:
        """Lock (`FOR NO KEY UPDATE`, ascending) the tasks outside `task_ids` that depend on
        any of them: what a deletion does before it locks `task_ids` themselves (the lock order
        above). With `visible_to`, only for those of `task_ids` that user may see."""
        ids = list(task_ids)
        if visible_to is None:
            await _LOCK_DEPENDENTS.fetch(self.connection, task_ids=ids)
        else:
            await _LOCK_DEPENDENTS_OF_VISIBLE.fetch(
                self.connection, task_ids=ids, user_id=visible_to
            )

    async def dependent_ids(self, task_ids: Sequence[int]) -> list[int]:
        """Tasks (outside `task_ids`) that depend on any of `task_ids`."""
        rows = await _DEPENDENT_IDS.fetch(self.connection, task_ids=list(task_ids))
        return [row[0] for row in rows]

    async def owned_ids(self, owner_id: int) -> list[int]:
        return [row[0] for row in await _OWNED_IDS.fetch(self.connection, user_id=owner_id)]

    async def unassign(
        self, assignee_id: int, now: datetime, *, project_id: int | None = None
    ) -> list[TaskRead]:
        """Remove `assignee_id` from every task assigned to them, or only from those of
        `project_id` (new versions)."""
        if project_id is None:
            rows = await _UNASSIGN.fetch(self.connection, user_id=assignee_id, now=now)
        else:
            rows = await _UNASSIGN_IN_PROJECT.fetch(
                self.connection, user_id=assignee_id, project_id=project_id, now=now
            )
        return [task_read(row) for row in rows]

    async def unassign_from_projects(self, assignee_id: int, now: datetime) -> list[TaskRead]:
        """Remove `assignee_id` from every project task assigned to them."""
        rows = await _UNASSIGN_FROM_PROJECTS.fetch(self.connection, user_id=assignee_id, now=now)
        return [task_read(row) for row in rows]

    async def find_page(self, task_filter: TaskFilter, user_id: int, now: datetime) -> TaskPage:
        """One page of the tasks matching the filter, the total, and where the next page starts
        (listing.py says how each stays cheap at any size)."""
        values = listing.list_values(task_filter, user_id, now)
        shape = await listing_shape(self.connection, task_filter, values)
        matched = None
        if shape.selective:
            found = await self._among_matches(shape, values, task_filter)
            if isinstance(found, TaskPage):
                return found
            matched = found
        page, total = listing.list_statements(
            shape, READ_COLUMNS, listing.cached_rows(shape, task_filter)
        )
        if not (page.plan_per_call and total.plan_per_call):
            return await self._page(page, total, values, task_filter, matched)
        # Both planned per call (listing.py): under one setting.
        async with planned_per_call(self.connection):
            return await self._page(page, total, values, task_filter, matched)

    async def _among_matches(
        self, shape: listing.ListShape, values: dict[str, Any], task_filter: TaskFilter
    ) -> TaskPage | int | None:
        """The page and its exact total from the filter's matches when there are no more than
        listing.TOTAL_CAP of them (`ListShape.matches`); otherwise how many were found (more
        than the cap: the page statement reads the page), or None when the page's rows all
        went between the two statements (the page statement reads it)."""
        matches, by_ids = listing.match_statements(shape, READ_COLUMNS, visible_to)
        rows = await matches.fetch(self.connection, **values)
        found = int(rows[0]["matches"])  # one row at least: the count
        if found > listing.TOTAL_CAP:
            return found
        rows = [row for row in rows if row["id"] is not None]
        if not rows:
            return TaskPage([], found, True, None)  # past the last match
        more = len(rows) > task_filter.limit
        rows = rows[: task_filter.limit]
        ids = [row["id"] for row in rows]
        # On the cached plan (a read by ids): planning it per call would cost more than
        # running it.
        read = {
            row["id"]: row for row in await by_ids.fetch(self.connection, **values, task_ids=ids)
        }
        tasks = [task_read(read[task_id]) for task_id in ids if task_id in read]
        if not tasks:
            return None
        position = None
        if more:
            # After the last row still there (one deleted in between leaves no gap).
            last = tasks[-1]
            key = next(row["sort_key"] for row in rows if row["id"] == last.id)
            position = listing.next_position(task_filter, last.due_date, key, last.id)
        return TaskPage(tasks, found, True, position)

    async def _page(
        self,
        page: Statement,
        total: Statement,
        values: dict[str, Any],
        task_filter: TaskFilter,
        matched: int | None,
    ) -> TaskPage:
        """The page statement's rows and the total: from `matched` when the matches were
        counted already (`_among_matches`), from the total statement otherwise."""
        rows = await page.fetch(self.connection, **values)
        more = len(rows) > task_filter.limit
        rows = rows[: task_filter.limit]
        tasks = [task_read(row) for row in rows]
        position = None
        if more:
            last = rows[-1]
            position = listing.next_position(
                task_filter, last["due_date"], last["sort_key"], last["id"]
            )
        if matched is not None:  # a selective shape: nothing of it is tallied
            return TaskPage(
                tasks, min(matched, listing.TOTAL_CAP), matched <= listing.TOTAL_CAP, position
            )
        if not more and task_filter.skip == 0 and task_filter.cursor is None:
            return TaskPage(tasks, len(tasks), True, position)
        row = await total.fetchrow(self.connection, **values)
        assert row is not None  # a SELECT of scalar subqueries returns one row
        counted = int(row["counted"])
        return TaskPage(
            tasks,
            int(row["tallied"]) + min(counted, listing.TOTAL_CAP),
            counted <= listing.TOTAL_CAP,
            position,
        )
