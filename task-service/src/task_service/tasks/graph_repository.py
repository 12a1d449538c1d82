"""Queries on the dependency graph: edges, the searches along them, and the locks that make a
new edge's cycle check race-safe. Statements compiled once, executed on asyncpg (see
`task_service.tasks.repository`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    Integer,
    and_,
    bindparam,
    delete,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from taskflow_kit.db import Statement, compile_statement

from task_service.tasks.models import Task, TaskDependency, TaskStatus
from task_service.tasks.repository import (
    READ_COLUMNS,
    TASK_ID,
    TASK_IDS,
    USER_ID,
    task_read,
    visible_to,
)
from task_service.tasks.schemas import TaskRead

# Advisory-lock namespaces (the two-int form, which never overlaps the one-bigint form other
# code uses). Adding an edge locks the nodes it could close a cycle through (see
# `lock_for_new_edge`); the graph key is taken shared by those writes and exclusively only by a
# write whose reachable set is too large to lock node by node.
GRAPH_LOCK_NAMESPACE = 0x7A5C
NODE_LOCK_NAMESPACE = 0x7A5D
MAX_NODE_LOCKS = 500
LOCK_ATTEMPTS = 3


class _LockSetGrew(Exception):
    """The nodes to lock grew while they were being locked (rolls their savepoint back)."""


DEPENDS_ON_ID = bindparam("depends_on_id", type_=BigInteger)
# The foreign key of an edge's source (`task_id`), as the metadata's naming convention names it.
EDGE_SOURCE_FK = "fk_task_dependency_task_id_task"
NOW = bindparam("now", type_=TaskDependency.created_at.type)

# UNION (not UNION ALL) keeps each node once: linear in the edges reachable.
_REACH = """
    WITH RECURSIVE reach(node) AS (
        SELECT CAST(:start AS bigint)
        UNION
        SELECT e.depends_on_id FROM task_dependency e JOIN reach ON e.task_id = reach.node
    )
"""
_COUNT_REACHABLE = compile_statement(
    text(f"{_REACH} SELECT count(*) FROM (SELECT node FROM reach LIMIT :cap) AS r")  # noqa: S608
)
_LOCK_GRAPH = compile_statement(text("SELECT pg_advisory_xact_lock(:ns, 0)"))
_LOCK_GRAPH_SHARED = compile_statement(text("SELECT pg_advisory_xact_lock_shared(:ns, 0)"))
# The nodes an edge source → start locks: its source and every node `start` reaches.
_NODES = f"""{_REACH}
    SELECT node FROM reach
    UNION SELECT CAST(:source AS bigint)
    ORDER BY 1"""  # noqa: S608
_LOCK_NODES = compile_statement(
    text(f"SELECT count(pg_advisory_xact_lock(:ns, hashint8(node))) FROM ({_NODES}) AS n")  # noqa: S608
)
_COUNT_NODES = compile_statement(text(f"SELECT count(*) FROM ({_NODES}) AS n"))  # noqa: S608
_REACHES = compile_statement(
    text(f"{_REACH} SELECT 1 FROM reach WHERE node = :goal LIMIT 1")  # noqa: S608
)

_EDGE = TaskDependency.__table__
_WALK = (
    select(_EDGE.c.task_id, _EDGE.c.depends_on_id)
    .where(_EDGE.c.task_id == TASK_ID)
    .cte("walk", recursive=True)
)
_WALK = _WALK.union(
    select(_EDGE.c.task_id, _EDGE.c.depends_on_id).join(
        _WALK, _EDGE.c.task_id == _WALK.c.depends_on_id
    )
)
_EDGES_REACHABLE = compile_statement(select(_WALK.c.task_id, _WALK.c.depends_on_id))

_TREE = (
    select(_EDGE.c.task_id, _EDGE.c.depends_on_id, literal(1, Integer).label("level"))
    .where(_EDGE.c.task_id == TASK_ID)
    .cte("tree", recursive=True)
)
_TREE = _TREE.union(
    select(_EDGE.c.task_id, _EDGE.c.depends_on_id, _TREE.c.level + 1)
    .join(_TREE, _EDGE.c.task_id == _TREE.c.depends_on_id)
    .where(_TREE.c.level < bindparam("depth", type_=Integer))
)
_TREE_EDGES = compile_statement(select(_TREE.c.task_id, _TREE.c.depends_on_id).distinct())

_BLOCKING = compile_statement(
    select(Task.id, Task.status)
    .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
    .where(TaskDependency.task_id == TASK_ID)
    .order_by(Task.id)
    .with_for_update(of=Task, read=True)
)
_ADD_EDGE = compile_statement(
    pg_insert(TaskDependency)
    .values(task_id=TASK_ID, depends_on_id=DEPENDS_ON_ID, created_at=NOW)
    .on_conflict_do_nothing()
    .returning(TaskDependency.task_id)
)
_ADD_EDGES = compile_statement(
    pg_insert(TaskDependency).from_select(
        ["task_id", "depends_on_id", "created_at"],
        select(
            TASK_ID,
            func.unnest(bindparam("depends_on_ids", type_=TASK_IDS.type)),
            NOW,
        ),
    )
)
_REMOVE_EDGE = compile_statement(
    delete(TaskDependency)
    .where(TaskDependency.task_id == TASK_ID, TaskDependency.depends_on_id == DEPENDS_ON_ID)
    .returning(TaskDependency.task_id)
)


def _neighbours(joined: Any, anchor: Any) -> tuple[Statement, Statement]:
    """(page, count) of the visible tasks joined to `task_id` along one edge direction."""
    condition = and_(anchor == TASK_ID, visible_to(USER_ID))
    page = (
        select(*READ_COLUMNS)
        .join(TaskDependency, joined == Task.id)
        .where(condition)
        .order_by(Task.id)
        .limit(bindparam("limit", type_=BigInteger))
    )
    count = (
        select(func.count())
        .select_from(Task)
        .join(TaskDependency, joined == Task.id)
        .where(condition)
    )
    return compile_statement(page), compile_statement(count)


_DEPENDENCIES = _neighbours(TaskDependency.depends_on_id, TaskDependency.task_id)
_DEPENDENTS = _neighbours(TaskDependency.task_id, TaskDependency.depends_on_id)


class DependencyGraphRepository:
    """The `task_dependency` edges on one asyncpg connection."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def blocking_ids(self, task_id: int) -> list[int]:
        """Dependencies of the task that are not done, share-locked: a concurrent reopening of
        one of them waits for this transaction instead of slipping past the check."""
        rows = await _BLOCKING.fetch(self.connection, task_id=task_id)
        return [row["id"] for row in rows if row["status"] != TaskStatus.DONE]

    async def lock_for_new_edge(self, task_id: int, depends_on_id: int) -> None:
        """Serialise this edge addition with every concurrent one that could close a cycle
        with it, and with no other.

        Two edges u1→v1 and u2→v2 that close a cycle together each reach the other's source
        (v1 ⇝ u2 and v2 ⇝ u1), so each writer locks its own source and every node reachable
        from its target: the two lock sets meet and the second writer re-checks after the
        first commits.

        Every writer takes its node locks in one ascending pass, so no two wait for each other
        in a circle. The set can grow while the pass waits (an edge out of it committed
        meanwhile); then the locks are dropped (a savepoint's rollback) and the grown set is
        taken again in order, rather than its new nodes out of order (which deadlocked:
        PostgreSQL takes a second to see it, and a ring of writers waited seconds). After
        `LOCK_ATTEMPTS` growths, or for a set beyond `MAX_NODE_LOCKS`, the graph lock is taken
        exclusively instead (such a write serialises with every other edge write, bounded).
        """
        for _ in range(LOCK_ATTEMPTS):
            try:
                async with self.connection.transaction():  # a savepoint
                    if await self._lock_reachable(task_id, depends_on_id):
                        return
                    raise _LockSetGrew()
            except (_LockSetGrew, asyncpg.DeadlockDetectedError):
                continue
        await _LOCK_GRAPH.execute(self.connection, ns=GRAPH_LOCK_NAMESPACE)

    async def _lock_reachable(self, task_id: int, depends_on_id: int) -> bool:
        """Lock the edge's nodes in one ascending pass; False if the set grew meanwhile."""
        reachable = await _COUNT_REACHABLE.fetchval(
            self.connection, start=depends_on_id, cap=MAX_NODE_LOCKS + 1
        )
        if int(reachable) > MAX_NODE_LOCKS:
            await _LOCK_GRAPH.execute(self.connection, ns=GRAPH_LOCK_NAMESPACE)
            return True
        await _LOCK_GRAPH_SHARED.execute(self.connection, ns=GRAPH_LOCK_NAMESPACE)
        nodes = {"start": depends_on_id, "source": task_id}
        locked = await _LOCK_NODES.fetchval(self.connection, ns=NODE_LOCK_NAMESPACE, **nodes)
        # Read again after the waits: a set that no longer grows is one this writer holds.
        return int(await _COUNT_NODES.fetchval(self.connection, **nodes)) == int(locked)

    async def reaches(self, start: int, goal: int) -> bool:
        """Whether `goal` is reachable from `start` along depends_on edges (searched in the
        database; the search stops at the first hit)."""
        return await _REACHES.fetchval(self.connection, start=start, goal=goal) is not None

    async def edges_reachable_from(self, task_id: int) -> list[tuple[int, int]]:
        """Every edge on a path starting at `task_id` (following depends_on)."""
        rows = await _EDGES_REACHABLE.fetch(self.connection, task_id=task_id)
        return [(row[0], row[1]) for row in rows]

    async def tree_edges(self, task_id: int, depth: int) -> list[tuple[int, int]]:
        """Edges reachable from `task_id` within `depth` levels."""
        rows = await _TREE_EDGES.fetch(self.connection, task_id=task_id, depth=depth)
        return [(row[0], row[1]) for row in rows]

    async def add_edge(self, task_id: int, depends_on_id: int, now: datetime) -> bool:
        """Insert the edge; False when it already existed."""
        row = await _ADD_EDGE.fetchrow(
            self.connection, task_id=task_id, depends_on_id=depends_on_id, now=now
        )
        return row is not None

    async def add_edges(self, task_id: int, depends_on_ids: Sequence[int], now: datetime) -> None:
        if depends_on_ids:
            await _ADD_EDGES.execute(
                self.connection, task_id=task_id, depends_on_ids=list(depends_on_ids), now=now
            )

    async def remove_edge(self, task_id: int, depends_on_id: int) -> bool:
        row = await _REMOVE_EDGE.fetchrow(
            self.connection, task_id=task_id, depends_on_id=depends_on_id
        )
        return row is not None

    async def visible_dependencies(
        self, task_id: int, user_id: int, *, limit: int
    ) -> tuple[list[TaskRead], int]:
        """The first `limit` visible tasks `task_id` depends on (by id), and how many in all."""
        return await self._page_of_neighbours(_DEPENDENCIES, task_id, user_id, limit)

    async def visible_dependents(
        self, task_id: int, user_id: int, *, limit: int
    ) -> tuple[list[TaskRead], int]:
        """The first `limit` visible tasks depending on `task_id` (by id), and how many in all."""
        return await self._page_of_neighbours(_DEPENDENTS, task_id, user_id, limit)

    async def _page_of_neighbours(
        self, statements: tuple[Statement, Statement], task_id: int, user_id: int, limit: int
    ) -> tuple[list[TaskRead], int]:
        page, count = statements
        rows = await page.fetch(self.connection, task_id=task_id, user_id=user_id, limit=limit)
        tasks = [task_read(row) for row in rows]
        if len(tasks) < limit:
            return tasks, len(tasks)
        total = await count.fetchval(self.connection, task_id=task_id, user_id=user_id)
        return tasks, int(total)
