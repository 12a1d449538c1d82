"""Every query of the tasks domain. Writes only flush; the request's session commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import aliased
from taskflow_kit.repository import RepositoryBase

from task_service.tasks import listing
from task_service.tasks.cursor import Position
from task_service.tasks.models import (
    IdempotencyRecord,
    Task,
    TaskDependency,
    TaskStatus,
)
from task_service.tasks.schemas import TaskFilter

# Advisory-lock namespaces (the two-int form, which never overlaps the one-bigint form other
# code uses). Adding an edge locks the nodes it could close a cycle through (see
# `lock_for_new_edge`); the graph key is taken shared by those writes and exclusively only by a
# write whose reachable set is too large to lock node by node.
GRAPH_LOCK_NAMESPACE = 0x7A5C
NODE_LOCK_NAMESPACE = 0x7A5D
MAX_NODE_LOCKS = 500
# Expired idempotency records removed per keyed POST, whoever owns them.
IDEMPOTENCY_SWEEP_BATCH = 100
LOCK_ATTEMPTS = 3
DEADLOCK_DETECTED = "40P01"


def _sqlstate(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    cause = getattr(orig, "__cause__", None)
    return str(getattr(orig, "sqlstate", "") or getattr(cause, "sqlstate", "") or "")


def visible_to(user_id: int) -> ColumnElement[bool]:
    return or_(Task.owner_id == user_id, Task.assignee_id == user_id)


# Selected beside a task (correlated to the statement's `tasks` row), so a task and its
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


@dataclass(frozen=True, slots=True)
class TaskPage:
    """A page of tasks, the total (a lower bound unless `total_exact`), and where the next
    page starts (None: this is the last)."""

    tasks: list[TaskWithDependencies]
    total: int
    total_exact: bool
    next_position: Position | None


@dataclass(frozen=True, slots=True)
class TaskWithDependencies:
    """A task, the ids of the tasks it depends on (ascending), and whether any is not done."""

    task: Task
    depends_on: list[int]
    blocked: bool


def _with_dependencies(rows: Iterable[Sequence[Any]]) -> list[TaskWithDependencies]:
    """(task, ids or NULL when none, blocked) rows as `TaskWithDependencies`."""
    return [TaskWithDependencies(row[0], list(row[1] or ()), bool(row[2])) for row in rows]


class TaskRepository(RepositoryBase[Task]):
    model = Task

    # -- tasks -------------------------------------------------------------------------------

    async def get_visible(
        self, task_id: int, user_id: int, *, lock: bool = False
    ) -> TaskWithDependencies | None:
        """The task (with its dependencies) if `user_id` owns it or is its assignee; `lock`
        takes the task's row lock."""
        statement = select(Task, DEPENDS_ON_IDS, BLOCKED).where(
            Task.id == task_id, visible_to(user_id)
        )
        if lock:
            statement = statement.with_for_update(of=Task)
        rows = _with_dependencies(await self.session.execute(statement))
        return rows[0] if rows else None

    async def with_dependencies(self, task: Task) -> TaskWithDependencies:
        """`task` (already loaded) with its dependencies as they are now."""
        statement = select(DEPENDS_ON_IDS, BLOCKED).select_from(Task).where(Task.id == task.id)
        ids, blocked = (await self.session.execute(statement)).one()
        return TaskWithDependencies(task, list(ids or ()), bool(blocked))

    async def visible_ids(self, task_ids: Sequence[int], user_id: int) -> set[int]:
        """Which of `task_ids` the user may see, key-share locked so they cannot vanish
        before this transaction's edges to them are committed."""
        statement = (
            select(Task.id)
            .where(Task.id.in_(task_ids), visible_to(user_id))
            .with_for_update(read=True, key_share=True)
        )
        return set((await self.session.execute(statement)).scalars())

    async def get_many(self, task_ids: Sequence[int]) -> list[TaskWithDependencies]:
        statement = (
            select(Task, DEPENDS_ON_IDS, BLOCKED).where(Task.id.in_(task_ids)).order_by(Task.id)
        )
        return _with_dependencies(await self.session.execute(statement))

    async def update(self, task: Task, values: Mapping[str, Any]) -> TaskWithDependencies:
        """Apply `values` and bump the version (the caller holds the row lock); the new row
        comes back with its dependencies."""
        statement = (
            update(Task)
            .where(Task.id == task.id)
            .values(**values, version=Task.version + 1)
            .returning(Task, DEPENDS_ON_IDS, BLOCKED)
            .execution_options(populate_existing=True)
        )
        return _with_dependencies(await self.session.execute(statement))[0]

    async def delete_one(self, task_id: int, now: datetime) -> None:
        """Delete the task; its edges go with it (ON DELETE CASCADE), and tasks that depended on
        it get a new version because their `depends_on` changed."""
        dependents = select(TaskDependency.task_id).where(TaskDependency.depends_on_id == task_id)
        await self.session.execute(
            update(Task)
            .where(Task.id.in_(dependents))
            .values(version=Task.version + 1, updated_at=now)
        )
        await self.session.execute(delete(Task).where(Task.id == task_id))

    async def dependent_ids(self, task_ids: Sequence[int]) -> list[int]:
        """Tasks (outside `task_ids`) that depend on any of `task_ids`."""
        statement = (
            select(TaskDependency.task_id)
            .where(
                TaskDependency.depends_on_id.in_(task_ids),
                TaskDependency.task_id.not_in(task_ids),
            )
            .distinct()
            .order_by(TaskDependency.task_id)
        )
        return list((await self.session.execute(statement)).scalars())

    async def owned_ids(self, owner_id: int) -> list[int]:
        statement = select(Task.id).where(Task.owner_id == owner_id).order_by(Task.id)
        return list((await self.session.execute(statement)).scalars())

    async def unassign(self, assignee_id: int, now: datetime) -> list[TaskWithDependencies]:
        """Remove `assignee_id` from every task assigned to them (new versions)."""
        statement = (
            update(Task)
            .where(Task.assignee_id == assignee_id)
            .values(assignee_id=None, updated_at=now, version=Task.version + 1)
            .returning(Task, DEPENDS_ON_IDS, BLOCKED)
            .execution_options(populate_existing=True)
        )
        return _with_dependencies(await self.session.execute(statement))

    async def delete_many(self, task_ids: Sequence[int], now: datetime) -> None:
        """Delete tasks (edges cascade); tasks depending on them get a new version."""
        if not task_ids:
            return
        dependents = select(TaskDependency.task_id).where(
            TaskDependency.depends_on_id.in_(task_ids)
        )
        await self.session.execute(
            update(Task)
            .where(Task.id.in_(dependents), Task.id.not_in(task_ids))
            .values(version=Task.version + 1, updated_at=now)
        )
        await self.session.execute(delete(Task).where(Task.id.in_(task_ids)))

    async def find_page(self, task_filter: TaskFilter, user_id: int, now: datetime) -> TaskPage:
        """One page of the tasks matching the filter, the total, and where the next page starts
        (listing.py says how each stays cheap at any size)."""
        page = listing.page_statement(task_filter, user_id, now).subquery("page")
        descending = task_filter.sort_order == "desc"
        ordering = (page.c.sort_key, page.c.id)
        statement = (
            select(Task, DEPENDS_ON_IDS, BLOCKED, page.c.sort_key)
            .join(page, page.c.id == Task.id)
            .order_by(*(column.desc() if descending else column.asc() for column in ordering))
        )
        rows = (await self.session.execute(statement)).all()
        more = len(rows) > task_filter.limit
        rows = rows[: task_filter.limit]
        tasks = _with_dependencies(rows)
        position = (
            listing.next_position(task_filter, rows[-1][0], rows[-1][3], more) if rows else None
        )
        if not more and task_filter.skip == 0 and task_filter.cursor is None:
            return TaskPage(tasks, len(tasks), True, position)
        total, exact = await self._total(task_filter, user_id, now)
        return TaskPage(tasks, total, exact, position)

    async def _total(
        self, task_filter: TaskFilter, user_id: int, now: datetime
    ) -> tuple[int, bool]:
        tallied = listing.tallied_total_statement(task_filter, user_id)
        if tallied is not None:
            return int((await self.session.execute(tallied)).scalar_one()), True
        statement = listing.capped_total_statement(task_filter, user_id, now)
        counted = int((await self.session.execute(statement)).scalar_one())
        return min(counted, listing.TOTAL_CAP), counted <= listing.TOTAL_CAP

    # -- dependencies ------------------------------------------------------------------------

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
        return [row_id for row_id, status in rows if status != TaskStatus.DONE]

    def _reachable_nodes_sql(self) -> str:
        # UNION (not UNION ALL) keeps each node once: linear in the edges reachable.
        return """
            WITH RECURSIVE reach(node) AS (
                SELECT CAST(:start AS bigint)
                UNION
                SELECT e.depends_on_id FROM task_dependency e JOIN reach ON e.task_id = reach.node
            )
        """

    async def lock_for_new_edge(self, task_id: int, depends_on_id: int) -> None:
        """Serialise this edge addition with every concurrent one that could close a cycle
        with it, and with no other.

        Two edges u1→v1 and u2→v2 that close a cycle together each reach the other's source
        (v1 ⇝ u2 and v2 ⇝ u1), so each writer locks its own source and every node reachable
        from its target: the two lock sets meet and the second writer re-checks after the
        first commits. Locks are taken in one order, repeated until the reachable set stops
        growing; nodes that joined meanwhile are locked out of order, so a deadlock is possible
        (three writers closing one ring): PostgreSQL aborts one, which retries. A reachable set
        beyond `MAX_NODE_LOCKS` takes the graph lock exclusively instead (such writes
        serialise with all others, but stay bounded).
        """
        for attempt in range(LOCK_ATTEMPTS):
            try:
                # In a savepoint: a deadlock victim's rollback releases the locks it took here.
                async with self.session.begin_nested():
                    await self._lock_reachable(task_id, depends_on_id)
                return
            except DBAPIError as exc:
                if _sqlstate(exc) != DEADLOCK_DETECTED or attempt == LOCK_ATTEMPTS - 1:
                    raise

    async def _lock_reachable(self, task_id: int, depends_on_id: int) -> None:
        reach = self._reachable_nodes_sql()
        counted = await self.session.execute(
            text(f"{reach} SELECT count(*) FROM (SELECT node FROM reach LIMIT :cap) AS r"),  # noqa: S608
            {"start": depends_on_id, "cap": MAX_NODE_LOCKS + 1},
        )
        if int(counted.scalar_one()) > MAX_NODE_LOCKS:
            await self.session.execute(
                text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": GRAPH_LOCK_NAMESPACE}
            )
            return
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock_shared(:ns, 0)"), {"ns": GRAPH_LOCK_NAMESPACE}
        )
        lock_all = text(
            f"""{reach}
            SELECT count(pg_advisory_xact_lock(:ns, hashint8(node))) FROM (
                SELECT node FROM reach
                UNION SELECT CAST(:source AS bigint)
                ORDER BY 1
            ) AS nodes"""  # noqa: S608
        )
        params = {"start": depends_on_id, "source": task_id, "ns": NODE_LOCK_NAMESPACE}
        locked = -1
        while True:
            count = int((await self.session.execute(lock_all, params)).scalar_one())
            if count == locked:
                return
            locked = count

    async def reaches(self, start: int, goal: int) -> bool:
        """Whether `goal` is reachable from `start` along depends_on edges (searched in the
        database; the search stops at the first hit)."""
        statement = text(
            f"{self._reachable_nodes_sql()} SELECT 1 FROM reach WHERE node = :goal LIMIT 1"  # noqa: S608
        )
        result = await self.session.execute(statement, {"start": start, "goal": goal})
        return result.first() is not None

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

    async def visible_dependencies(
        self, task_id: int, user_id: int, *, limit: int
    ) -> tuple[list[TaskWithDependencies], int]:
        """The first `limit` visible tasks `task_id` depends on (by id), and how many in all."""
        return await self._page_of_neighbours(
            TaskDependency.depends_on_id, TaskDependency.task_id, task_id, user_id, limit
        )

    async def visible_dependents(
        self, task_id: int, user_id: int, *, limit: int
    ) -> tuple[list[TaskWithDependencies], int]:
        """The first `limit` visible tasks depending on `task_id` (by id), and how many in all."""
        return await self._page_of_neighbours(
            TaskDependency.task_id, TaskDependency.depends_on_id, task_id, user_id, limit
        )

    async def _page_of_neighbours(
        self, joined: Any, anchor: Any, task_id: int, user_id: int, limit: int
    ) -> tuple[list[TaskWithDependencies], int]:
        condition = and_(anchor == task_id, visible_to(user_id))
        statement = (
            select(Task, DEPENDS_ON_IDS, BLOCKED)
            .join(TaskDependency, joined == Task.id)
            .where(condition)
            .order_by(Task.id)
            .limit(limit)
        )
        tasks = _with_dependencies(await self.session.execute(statement))
        if len(tasks) < limit:
            return tasks, len(tasks)
        total = select(func.count()).select_from(Task).join(TaskDependency, joined == Task.id)
        return tasks, int((await self.session.execute(total.where(condition))).scalar_one())

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
                IdempotencyRecord.key == key,
                IdempotencyRecord.created_at < expired_before,
            )
        )
        await self.sweep_idempotency_records(expired_before)
        statement = (
            pg_insert(IdempotencyRecord)
            .values(owner_id=owner_id, key=key, request_hash=request_hash, created_at=now)
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.key)
        )
        return (await self.session.execute(statement)).first() is not None

    async def sweep_idempotency_records(
        self, expired_before: datetime, *, batch: int = IDEMPOTENCY_SWEEP_BATCH
    ) -> int:
        """Delete up to `batch` expired records of any owner (oldest first, skipping rows
        another transaction holds): every keyed POST sweeps a little, so records never wait
        for their own owner to come back."""
        expired = (
            select(IdempotencyRecord.owner_id, IdempotencyRecord.key)
            .where(IdempotencyRecord.created_at < expired_before)
            .order_by(IdempotencyRecord.created_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        statement = (
            delete(IdempotencyRecord)
            .where(tuple_(IdempotencyRecord.owner_id, IdempotencyRecord.key).in_(expired))
            .returning(IdempotencyRecord.key)
        )
        return len((await self.session.execute(statement)).all())

    async def get_idempotency_record(self, owner_id: int, key: str) -> IdempotencyRecord | None:
        statement = select(IdempotencyRecord).where(
            IdempotencyRecord.owner_id == owner_id, IdempotencyRecord.key == key
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def save_idempotent_response(self, owner_id: int, key: str, body: dict[str, Any]) -> None:
        await self.session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.owner_id == owner_id, IdempotencyRecord.key == key)
            .values(response_body=body)
        )
