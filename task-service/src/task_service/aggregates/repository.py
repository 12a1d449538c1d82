"""Aggregate queries over tasks: every number is computed by PostgreSQL (FILTER / GROUP BY)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, cast, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from task_service.tasks.models import Task, TaskPriority, TaskStatus
from task_service.tasks.repository import visible_to

WEEK = timedelta(days=7)


def _utc_date(column: Any) -> ColumnElement[date]:
    return cast(func.timezone("UTC", column), Date)


class AggregateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _scope(user_id: int | None) -> ColumnElement[bool]:
        return visible_to(user_id) if user_id is not None else true()

    async def counts(self, user_id: int | None, now: datetime) -> dict[str, int]:
        """Totals by status and priority, overdue, due soon, recently completed, owners."""
        not_done = Task.status != TaskStatus.DONE
        columns = {
            "total": func.count(),
            **{f"status_{name}": func.count().filter(Task.status == name) for name in TaskStatus},
            **{
                f"priority_{name}": func.count().filter(Task.priority == name)
                for name in TaskPriority
            },
            "overdue": func.count().filter(not_done, Task.due_date < now),
            "due_next_7_days": func.count().filter(
                not_done, Task.due_date >= now, Task.due_date < now + WEEK
            ),
            "completed_last_7_days": func.count().filter(
                Task.status == TaskStatus.DONE, Task.completed_at >= now - WEEK
            ),
            "owners": func.count(func.distinct(Task.owner_id)),
        }
        statement = select(*(column.label(name) for name, column in columns.items())).where(
            self._scope(user_id)
        )
        row = (await self.session.execute(statement)).one()
        return dict(row._mapping)

    async def created_per_day(self, user_id: int | None, since: date) -> dict[date, int]:
        return await self._per_day(Task.created_at, user_id, since)

    async def completed_per_day(self, user_id: int | None, since: date) -> dict[date, int]:
        return await self._per_day(Task.completed_at, user_id, since)

    async def _per_day(self, column: Any, user_id: int | None, since: date) -> dict[date, int]:
        day = _utc_date(column).label("day")
        statement = (
            select(day, func.count().label("tasks"))
            .where(self._scope(user_id), column.is_not(None), day >= since)
            .group_by(day)
        )
        rows = await self.session.execute(statement)
        return {row.day: row.tasks for row in rows}
