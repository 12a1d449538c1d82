"""The rules of the dependency graph: who may add or remove an edge, no cycles (checked under
the locks that make concurrent additions safe), and the graph as the API shows it."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import asyncpg
from taskflow_kit.auth import Principal
from taskflow_kit.dberrors import constraint_name

from task_service.tasks.errors import (
    DependencyCycle,
    DependencyNotFound,
    DependencyOutsideProject,
    OwnerOnly,
    SelfDependency,
    TaskNotFound,
)
from task_service.tasks.events import TASK_UPDATED
from task_service.tasks.graph_repository import EDGE_SOURCE_FK
from task_service.tasks.models import TaskPriority, TaskStatus
from task_service.tasks.schemas import (
    DEPENDENCIES_DEFAULT_LIMIT,
    DependencyTreeNode,
    TaskDependencies,
    TaskRead,
)
from task_service.tasks.service import TaskService


def find_path(edges: Iterable[tuple[int, int]], start: int, goal: int) -> list[int] | None:
    """A shortest path start → … → goal over directed edges, or None."""
    adjacency: dict[int, list[int]] = {}
    for source, target in edges:
        adjacency.setdefault(source, []).append(target)
    previous: dict[int, int | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while (parent := previous[path[-1]]) is not None:
                path.append(parent)
            return path[::-1]
        for target in sorted(adjacency.get(node, ())):
            if target not in previous:
                previous[target] = node
                queue.append(target)
    return None


class DependencyService:
    """Edges between tasks, over the task rules of the same connection (`tasks`)."""

    def __init__(self, tasks: TaskService) -> None:
        self.tasks = tasks
        self.graph = tasks.graph

    async def add_dependency(
        self, principal: Principal, task_id: int, depends_on_id: int
    ) -> TaskRead:
        task = await self._editable(principal, task_id)
        if depends_on_id == task_id:
            raise SelfDependency()
        # Not locked: an edge writer holds no task row while it waits for the graph's locks
        # below (one that did deadlocked in rings with writers holding those locks and waiting
        # for a row). A dependency deleted meanwhile fails the edge's foreign key: 404 below.
        visible = await self.tasks.repository.visible_ids([depends_on_id], principal.id, lock=False)
        if depends_on_id not in visible:
            raise TaskNotFound(depends_on_id)
        if visible[depends_on_id] != task.project_id:
            raise DependencyOutsideProject(depends_on_id, "depends_on_id")
        await self.graph.lock_for_new_edge(task_id, depends_on_id)
        # Under the lock, the graph searched here is the graph the new edge joins. The search
        # runs in the database; the edges are loaded only to name the cycle.
        if await self.graph.reaches(depends_on_id, task_id):
            path = find_path(
                await self.graph.edges_reachable_from(depends_on_id), depends_on_id, task_id
            )
            raise DependencyCycle([task_id, *(path or [depends_on_id, task_id])])
        now = self.tasks.clock()
        try:
            added = await self.graph.add_edge(task_id, depends_on_id, now)
        except asyncpg.ForeignKeyViolationError as exc:
            # One of the two was deleted after the checks read it (a concurrent DELETE).
            gone = task_id if constraint_name(exc) == EDGE_SOURCE_FK else depends_on_id
            raise TaskNotFound(gone) from exc
        if not added:
            return task
        changed = await self.tasks.repository.update(task.id, {"updated_at": now})
        await self.tasks.events.record(TASK_UPDATED, changed)
        return changed

    async def remove_dependency(
        self, principal: Principal, task_id: int, depends_on_id: int
    ) -> None:
        # The task's row before its edge (the repository's lock order: a deletion of the
        # dependency locks this task, then deletes the edge).
        task = await self._editable(principal, task_id, lock=True)
        if not await self.graph.remove_edge(task_id, depends_on_id):
            raise DependencyNotFound(task_id, depends_on_id)
        changed = await self.tasks.repository.update(task.id, {"updated_at": self.tasks.clock()})
        await self.tasks.events.record(TASK_UPDATED, changed)

    async def _editable(
        self, principal: Principal, task_id: int, *, lock: bool = False
    ) -> TaskRead:
        """The task whose edges the caller may change: a personal task's owner, any member of
        a project task's project (`lock`: its row locked)."""
        task = await self.tasks.get_visible(principal, task_id, lock=lock)
        if task.project_id is not None:
            await self.tasks.member_access(principal, task.project_id, task_id=task.id)
        elif task.owner_id != principal.id:
            raise OwnerOnly("change its dependencies")
        return task

    async def dependencies(
        self, principal: Principal, task_id: int, *, limit: int = DEPENDENCIES_DEFAULT_LIMIT
    ) -> TaskDependencies:
        task = await self.tasks.get_visible(principal, task_id)
        depends_on, depends_on_total = await self.graph.visible_dependencies(
            task.id, principal.id, limit=limit
        )
        dependents, dependents_total = await self.graph.visible_dependents(
            task.id, principal.id, limit=limit
        )
        return TaskDependencies(
            depends_on=depends_on,
            dependents=dependents,
            depends_on_total=depends_on_total,
            dependents_total=dependents_total,
            limit=limit,
        )

    async def dependency_tree(
        self, principal: Principal, task_id: int, depth: int
    ) -> DependencyTreeNode:
        root = await self.tasks.get_visible(principal, task_id)
        edges = await self.graph.tree_edges(root.id, depth)
        children: dict[int, list[int]] = {}
        for source, target in sorted(edges):
            children.setdefault(source, []).append(target)
        node_ids = sorted({root.id, *children, *(t for ts in children.values() for t in ts)})
        tasks = {task.id: task for task in await self.tasks.repository.get_many(node_ids)}
        in_projects = any(task.project_id is not None for task in tasks.values())
        projects = await self.tasks.projects.project_ids_of(principal.id) if in_projects else set()

        if root.id not in tasks:  # deleted since it was read: each read is its own snapshot
            raise TaskNotFound(root.id)

        def build(node_id: int, level: int) -> DependencyTreeNode:
            task = tasks[node_id]
            if task.project_id is None:
                visible = principal.id in (task.owner_id, task.assignee_id)
            else:
                visible = task.project_id in projects
            expand = visible and level < depth
            return DependencyTreeNode(
                id=task.id,
                visible=visible,
                title=task.title if visible else None,
                status=TaskStatus(task.status),
                priority=TaskPriority(task.priority) if visible else None,
                is_completed=task.status == TaskStatus.DONE,
                blocked=task.blocked,
                truncated=bool(task.depends_on) and not expand,
                # A task deleted between reading the edges and the tasks is left out.
                dependencies=[
                    build(child, level + 1) for child in children.get(node_id, []) if child in tasks
                ]
                if expand
                else [],
            )

        return build(root.id, 0)
