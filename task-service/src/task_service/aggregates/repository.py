"""Aggregate queries over tasks: every number is computed by PostgreSQL, none by counting a
user's whole task list.

Counts by status and priority come from `task_tally` (running counts the database keeps), the
time-windowed ones from index ranges: a user with a million tasks costs what one with a
hundred does, give or take the rows inside the windows.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Subquery,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from task_service.aggregates.models import TaskTally
from task_service.tasks.models import NOT_DONE, Task, TaskPriority, TaskStatus

WEEK = timedelta(days=7)
# A user's tally rows are folded back into one per group once there are more than this.
COMPACT_AFTER = 64


def _utc_date(column: Any) -> ColumnElement[date]:
    return cast(func.timezone("UTC", column), Date)


def visible_rows(user_id: int | None, *columns: Any, where: Any = ()) -> Subquery:
    """`columns` of the tasks `user_id` can see (every task for None) matching `where`.

    Visibility (owner or assignee) is a UNION ALL of two branches, the owned tasks and those
    assigned by someone else, so each is a range of an index led by its user column instead of
    an OR that no index serves.
    """
    if user_id is None:
        return select(*columns).where(*where).subquery("visible")
    owned = select(*columns).where(Task.owner_id == user_id, *where)
    assigned = select(*columns).where(Task.assignee_id == user_id, Task.owner_id != user_id, *where)
    return union_all(owned, assigned).subquery("visible")


class AggregateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def counts(self, user_id: int | None, now: datetime) -> dict[str, int]:
        """Totals by status and priority, overdue, due soon, recently completed, owners."""
        counts, owns_any = await self._tallied(user_id)
        due = visible_rows(user_id, Task.due_date, where=(NOT_DONE, Task.due_date < now + WEEK))
        statement = select(
            func.count().filter(due.c.due_date < now).label("overdue"),
            func.count().filter(due.c.due_date >= now).label("due_next_7_days"),
        )
        row = (await self.session.execute(statement.select_from(due))).one()
        counts.update(row._mapping)
        completed = visible_rows(user_id, Task.id, where=(Task.completed_at >= now - WEEK,))
        counts["completed_last_7_days"] = int(
            (await self.session.execute(select(func.count()).select_from(completed))).scalar_one()
        )
        counts["owners"] = await self._owners(user_id, owns_any=owns_any)
        return counts

    async def _tallied(self, user_id: int | None) -> tuple[dict[str, int], bool]:
        """Total, by status and by priority, from the running counts; and whether the user
        owns any task."""
        scope = TaskTally.owned if user_id is None else TaskTally.user_id == user_id
        statement = (
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
        rows = (await self.session.execute(statement)).all()
        counts = dict.fromkeys(
            ["total"]
            + [f"status_{name}" for name in TaskStatus]
            + [f"priority_{name}" for name in TaskPriority],
            0,
        )
        for row in rows:
            counts["total"] += row.tasks
            counts[f"status_{row.status}"] += row.tasks
            counts[f"priority_{row.priority}"] += row.tasks
        if user_id is not None and sum(row.rows for row in rows) > COMPACT_AFTER:
            await self.compact(user_id)
        owns_any = any(row.owned and row.tasks > 0 for row in rows)
        return {name: int(value) for name, value in counts.items()}, owns_any

    async def compact(self, user_id: int) -> None:
        """Fold the user's tally rows into one per group (same sums). Rows a concurrent writer
        adds meanwhile are not in this statement's snapshot and stay as they are; a concurrent
        compaction waits for this one and then finds the rows it would fold gone."""
        folded = (
            delete(TaskTally)
            .where(TaskTally.user_id == user_id)
            .returning(TaskTally.owned, TaskTally.status, TaskTally.priority, TaskTally.tasks)
            .cte("folded")
        )
        sums = (
            select(
                literal(user_id),
                folded.c.owned,
                folded.c.status,
                folded.c.priority,
                func.sum(folded.c.tasks),
            )
            .group_by(folded.c.owned, folded.c.status, folded.c.priority)
            .having(func.sum(folded.c.tasks) != 0)
        )
        columns = ["user_id", "owned", "status", "priority", "tasks"]
        await self.session.execute(insert(TaskTally).from_select(columns, sums))

    async def _owners(self, user_id: int | None, *, owns_any: bool) -> int:
        """Distinct owners of the visible tasks: the user, if they own any, and whoever
        assigned them the others."""
        if user_id is None:
            owners = (
                select(TaskTally.user_id)
                .where(TaskTally.owned)
                .group_by(TaskTally.user_id)
                .having(func.sum(TaskTally.tasks) > 0)
                .subquery()
            )
            statement = select(func.count()).select_from(owners)
            return int((await self.session.execute(statement)).scalar_one())
        statement = select(func.count(func.distinct(Task.owner_id))).where(
            Task.assignee_id == user_id, Task.owner_id != user_id
        )
        return int((await self.session.execute(statement)).scalar_one()) + int(owns_any)

    async def created_per_day(self, user_id: int | None, since: date) -> dict[date, int]:
        return await self._per_day(Task.created_at, user_id, since)

    async def completed_per_day(self, user_id: int | None, since: date) -> dict[date, int]:
        return await self._per_day(Task.completed_at, user_id, since)

    async def _per_day(self, column: Any, user_id: int | None, since: date) -> dict[date, int]:
        # A range on the timestamp itself (indexed per owner), the UTC day computed on the
        # rows inside it: midnight UTC of `since` is the first instant counted.
        rows = visible_rows(
            user_id,
            _utc_date(column).label("day"),
            where=(column >= func.timezone("UTC", cast(literal(since), Date)),),
        )
        statement = select(rows.c.day, func.count().label("tasks")).group_by(rows.c.day)
        result = await self.session.execute(statement)
        return {row.day: row.tasks for row in result}
