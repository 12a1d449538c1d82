"""Every query of the tasks domain. Writes only flush; the request's session commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from task_service.tasks.models import PRIORITIES, STATUSES, IdempotencyRecord, Task, TaskDependency
from task_service.tasks.schemas import TaskFilter

# One lock for the whole dependency graph: adding an edge is rare next to reading, and a
# graph may span owners (a task is visible to its assignee too), so a per-owner lock is not safe.
DEPENDENCY_GRAPH_LOCK = 0x7A5C_DE95

PRIORITY_RANK = case({name: rank for rank, name in enumerate(PRIORITIES)}, value=Task.priority)
STATUS_RANK = case({name: rank for rank, name in enumerate(STATUSES)}, value=Task.status)


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def visible_to(user_id: int) -> ColumnElement[bool]:
    return or_(Task.owner_id == user_id, Task.assignee_id == user_id)


class TaskRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- tasks -------------------------------------------------------------------------------

    async def add(self, task: Task) -> Task:
        self.session.add(task)
        await self.session.flush()
        return task

    async def get_visible(self, task_id: int, user_id: int, *, lock: bool = False) -> Task | None:
        """The task if `user_id` owns it or is its assignee; `lock` takes its row lock."""
        statement = select(Task).where(Task.id == task_id, visible_to(user_id))
        if lock:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def visible_ids(self, task_ids: Sequence[int], user_id: int) -> set[int]:
        """Which of `task_ids` the user may see, key-share locked so they cannot vanish
        before this transaction's edges to them are committed."""
        statement = (
            select(Task.id)
            .where(Task.id.in_(task_ids), visible_to(user_id))
            .with_for_update(read=True, key_share=True)
        )
        return set((await self.session.execute(statement)).scalars())

    async def get_many(self, task_ids: Sequence[int]) -> list[Task]:
        statement = select(Task).where(Task.id.in_(task_ids)).order_by(Task.id)
        return list((await self.session.execute(statement)).scalars())

    async def update(self, task: Task, values: Mapping[str, Any]) -> Task:
        """Apply `values` and bump the version (the caller holds the row lock)."""
        statement = (
            update(Task)
            .where(Task.id == task.id)
            .values(**values, version=Task.version + 1)
            .returning(Task)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one()

    async def delete(self, task_id: int, now: datetime) -> None:
        """Delete the task; its edges go with it (ON DELETE CASCADE), and tasks that depended on
        it get a new version because their `depends_on` changed."""
        dependents = select(TaskDependency.task_id).where(TaskDependency.depends_on_id == task_id)
        await self.session.execute(
            update(Task)
            .where(Task.id.in_(dependents))
            .values(version=Task.version + 1, updated_at=now)
        )
        await self.session.execute(delete(Task).where(Task.id == task_id))

    async def find_page(
        self, task_filter: TaskFilter, user_id: int, now: datetime
    ) -> tuple[list[Task], int]:
        """One page of the tasks matching the filter, and how many match in total."""
        conditions = self._conditions(task_filter, user_id, now)
        total_statement = select(func.count()).select_from(Task).where(*conditions)
        total = (await self.session.execute(total_statement)).scalar_one()
        statement = (
            select(Task)
            .where(*conditions)
            .order_by(*self._ordering(task_filter))
            .offset(task_filter.skip)
            .limit(task_filter.limit)
        )
        tasks = list((await self.session.execute(statement)).scalars())
        return tasks, total

    @staticmethod
    def _conditions(
        task_filter: TaskFilter, user_id: int, now: datetime
    ) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if task_filter.scope == "owned":
            conditions.append(Task.owner_id == user_id)
        elif task_filter.scope == "assigned":
            conditions.append(Task.assignee_id == user_id)
        else:
            conditions.append(visible_to(user_id))
        if task_filter.statuses:
            conditions.append(Task.status.in_([str(status) for status in task_filter.statuses]))
        if task_filter.priorities:
            conditions.append(Task.priority.in_([str(p) for p in task_filter.priorities]))
        if task_filter.tags:
            conditions.append(Task.tags.contains(task_filter.tags))
        if task_filter.search:
            pattern = _like_pattern(task_filter.search)
            conditions.append(
                or_(
                    Task.title.ilike(pattern, escape="\\"),
                    Task.description.ilike(pattern, escape="\\"),
                )
            )
        if task_filter.assignee_id is not None:
            conditions.append(Task.assignee_id == task_filter.assignee_id)
        if task_filter.due_before is not None:
            conditions.append(Task.due_date < task_filter.due_before)
        if task_filter.due_after is not None:
            conditions.append(Task.due_date >= task_filter.due_after)
        overdue = and_(Task.status != "done", Task.due_date < now)
        if task_filter.overdue is True:
            conditions.append(overdue)
        elif task_filter.overdue is False:
            conditions.append(
                or_(Task.status == "done", Task.due_date.is_(None), Task.due_date >= now)
            )
        return conditions

    @staticmethod
    def _ordering(task_filter: TaskFilter) -> list[Any]:
        key: Any = {
            "created_at": Task.created_at,
            "updated_at": Task.updated_at,
            "due_date": Task.due_date,
            "priority": PRIORITY_RANK,
            "title": func.lower(Task.title).collate("C"),
            "status": STATUS_RANK,
        }[task_filter.sort_by]
        if task_filter.sort_order == "asc":
            # Tasks without a due date come last in both directions; the id makes ties stable.
            return [key.asc().nulls_last(), Task.id.asc()]
        return [key.desc().nulls_last(), Task.id.desc()]

    # -- dependencies ------------------------------------------------------------------------

    async def dependencies_of(self, task_ids: Sequence[int]) -> dict[int, list[tuple[int, str]]]:
        """For each task, the (id, status) of every task it depends on, by id."""
        result: dict[int, list[tuple[int, str]]] = {task_id: [] for task_id in task_ids}
        if not task_ids:
            return result
        statement = (
            select(TaskDependency.task_id, TaskDependency.depends_on_id, Task.status)
            .join(Task, Task.id == TaskDependency.depends_on_id)
            .where(TaskDependency.task_id.in_(task_ids))
            .order_by(TaskDependency.task_id, TaskDependency.depends_on_id)
        )
        for task_id, depends_on_id, status in await self.session.execute(statement):
            result[task_id].append((depends_on_id, status))
        return result

    async def blocking_ids(self, task_id: int) -> list[int]:
        """Dependencies of the task that are not done, share-locked: a concurrent reopening of
        one of them waits for this transaction instead of slipping past the check."""
        statement = (
            select(Task.id, Task.status)
            .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
            .where(TaskDependency.task_id == task_id)
            .order_by(Task.id)
            .with_for_update(of=Task, read=True)
        )
        rows = await self.session.execute(statement)
        return [row_id for row_id, status in rows if status != "done"]

    async def lock_dependency_graph(self) -> None:
        """Serialise edge additions until this transaction ends (the cycle check stays true)."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": DEPENDENCY_GRAPH_LOCK}
        )

    async def edges_reachable_from(self, task_id: int) -> list[tuple[int, int]]:
        """Every edge on a path starting at `task_id` (following depends_on)."""
        edge = TaskDependency.__table__
        walk = (
            select(edge.c.task_id, edge.c.depends_on_id)
            .where(edge.c.task_id == task_id)
            .cte("walk", recursive=True)
        )
        walk = walk.union(
            select(edge.c.task_id, edge.c.depends_on_id).join(
                walk, edge.c.task_id == walk.c.depends_on_id
            )
        )
        rows = await self.session.execute(select(walk.c.task_id, walk.c.depends_on_id))
        return [(source, target) for source, target in rows]

    async def tree_edges(self, task_id: int, depth: int) -> list[tuple[int, int]]:
        """Edges reachable from `task_id` within `depth` levels."""
        edge = TaskDependency.__table__
        walk = (
            select(edge.c.task_id, edge.c.depends_on_id, literal(1).label("level"))
            .where(edge.c.task_id == task_id)
            .cte("tree", recursive=True)
        )
        walk = walk.union(
            select(edge.c.task_id, edge.c.depends_on_id, walk.c.level + 1)
            .join(walk, edge.c.task_id == walk.c.depends_on_id)
            .where(walk.c.level < depth)
        )
        rows = await self.session.execute(select(walk.c.task_id, walk.c.depends_on_id).distinct())
        return [(source, target) for source, target in rows]

    async def add_edge(self, task_id: int, depends_on_id: int, now: datetime) -> bool:
        """Insert the edge; False when it already existed."""
        statement = (
            pg_insert(TaskDependency)
            .values(task_id=task_id, depends_on_id=depends_on_id, created_at=now)
            .on_conflict_do_nothing()
            .returning(TaskDependency.task_id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def add_edges(self, task_id: int, depends_on_ids: Sequence[int], now: datetime) -> None:
        if depends_on_ids:
            await self.session.execute(
                insert(TaskDependency),
                [
                    {"task_id": task_id, "depends_on_id": target, "created_at": now}
                    for target in depends_on_ids
                ],
            )

    async def remove_edge(self, task_id: int, depends_on_id: int) -> bool:
        statement = (
            delete(TaskDependency)
            .where(TaskDependency.task_id == task_id, TaskDependency.depends_on_id == depends_on_id)
            .returning(TaskDependency.task_id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def visible_dependencies(self, task_id: int, user_id: int) -> list[Task]:
        statement = (
            select(Task)
            .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
            .where(TaskDependency.task_id == task_id, visible_to(user_id))
            .order_by(Task.id)
        )
        return list((await self.session.execute(statement)).scalars())

    async def visible_dependents(self, task_id: int, user_id: int) -> list[Task]:
        statement = (
            select(Task)
            .join(TaskDependency, TaskDependency.task_id == Task.id)
            .where(TaskDependency.depends_on_id == task_id, visible_to(user_id))
            .order_by(Task.id)
        )
        return list((await self.session.execute(statement)).scalars())

    # -- idempotency -------------------------------------------------------------------------

    async def claim_idempotency_key(
        self, owner_id: int, key: str, request_hash: str, now: datetime, expired_before: datetime
    ) -> bool:
        """Reserve (owner, key) for this request; False when another request holds it.

        A concurrent duplicate blocks on the unique key until the first transaction ends, then
        sees its committed record (or takes the key over if the first one rolled back).
        """
        await self.session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.owner_id == owner_id,
                IdempotencyRecord.created_at < expired_before,
            )
        )
        statement = (
            pg_insert(IdempotencyRecord)
            .values(owner_id=owner_id, key=key, request_hash=request_hash, created_at=now)
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.key)
        )
        return (await self.session.execute(statement)).first() is not None

    async def get_idempotency_record(self, owner_id: int, key: str) -> IdempotencyRecord | None:
        statement = select(IdempotencyRecord).where(
            IdempotencyRecord.owner_id == owner_id, IdempotencyRecord.key == key
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def save_idempotent_response(
        self, owner_id: int, key: str, status: int, body: dict[str, Any]
    ) -> None:
        await self.session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.owner_id == owner_id, IdempotencyRecord.key == key)
            .values(response_status=status, response_body=body)
        )
