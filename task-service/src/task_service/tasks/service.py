"""The rules of the tasks domain: visibility, who may change what, status, cycles, idempotency."""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from taskflow_kit.auth import Principal
from taskflow_kit.outbox import Outbox
from taskflow_kit.resilience import ResilientClient

from task_service.tasks.cursor import encode_cursor
from task_service.tasks.errors import (
    AssigneeNotActive,
    DependencyCycle,
    DependencyNotFound,
    IdempotencyKeyReused,
    OwnerOnly,
    SelfDependency,
    TaskBlocked,
    TaskNotFound,
    VersionMismatch,
)
from task_service.tasks.events import (
    TASK_ASSIGNED,
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_DELETED,
    TASK_UPDATED,
    TaskEvents,
)
from task_service.tasks.models import Task, TaskPriority, TaskStatus
from task_service.tasks.repository import TaskRepository, TaskWithDependencies
from task_service.tasks.schemas import (
    DEPENDENCIES_DEFAULT_LIMIT,
    DependencyTreeNode,
    TaskCreate,
    TaskDependencies,
    TaskFilter,
    TaskList,
    TaskRead,
    TaskUpdate,
    resolve_status,
)
from task_service.user_directory import UserDirectory
from task_service.users.repository import KnownUserRepository

IDEMPOTENCY_TTL = timedelta(hours=24)

# None: no If-Match precondition (or `*`); otherwise the versions the client accepts.
IfMatch = frozenset[int] | None
StatusRule = Callable[[TaskStatus], TaskStatus]


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


def request_fingerprint(data: TaskCreate) -> str:
    """A stable hash of the normalised creation body (same meaning → same hash)."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_if_match(task: Task, if_match: IfMatch) -> None:
    if if_match is not None and task.version not in if_match:
        raise VersionMismatch(task.version)


def to_read(row: TaskWithDependencies) -> TaskRead:
    task = row.task
    return TaskRead(
        id=task.id,
        title=task.title,
        description=task.description,
        status=TaskStatus(task.status),
        priority=TaskPriority(task.priority),
        is_completed=task.status == TaskStatus.DONE,
        due_date=task.due_date,
        tags=list(task.tags),
        owner_id=task.owner_id,
        assignee_id=task.assignee_id,
        depends_on=row.depends_on,
        blocked=row.blocked,
        created_at=task.created_at,
        updated_at=task.updated_at,
        completed_at=task.completed_at,
        version=task.version,
    )


def status_changes(current: TaskStatus, target: TaskStatus, now: datetime) -> dict[str, Any]:
    """Column values for moving from `current` to `target` (completed_at follows status)."""
    if target is current:
        return {}
    values: dict[str, Any] = {"status": str(target)}
    if target is TaskStatus.DONE:
        values["completed_at"] = now
    elif current is TaskStatus.DONE:
        values["completed_at"] = None
    return values


class TaskService:
    """Task rules over the parts it is given; every change records its `task.*` event."""

    def __init__(
        self,
        repository: TaskRepository,
        user_directory: UserDirectory,
        events: TaskEvents,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self.user_directory = user_directory
        self.events = events
        self.clock = clock

    @classmethod
    def for_session(
        cls, session: AsyncSession, *, user_client: ResilientClient, outbox: Outbox
    ) -> TaskService:
        """The service over one transaction (a request's, or an event handler's)."""
        return cls(
            TaskRepository(session),
            UserDirectory(client=user_client, known=KnownUserRepository(session)),
            TaskEvents(session, outbox),
        )

    # -- reading -----------------------------------------------------------------------------

    # The repository's reads and writes return each task with its dependencies (one query
    # for both), so building what the API shows needs no query of its own.

    @staticmethod
    def read_model(row: TaskWithDependencies) -> TaskRead:
        """The task as the API shows it: its `TaskRead`, with `depends_on` and `blocked`."""
        return to_read(row)

    @staticmethod
    def read_models(rows: Sequence[TaskWithDependencies]) -> list[TaskRead]:
        """`read_model` of each task."""
        return [to_read(row) for row in rows]

    async def get_visible(
        self, principal: Principal, task_id: int, *, lock: bool = False
    ) -> TaskWithDependencies:
        row = await self.repository.get_visible(task_id, principal.id, lock=lock)
        if row is None:
            raise TaskNotFound(task_id)
        return row

    async def get(self, principal: Principal, task_id: int) -> TaskRead:
        return self.read_model(await self.get_visible(principal, task_id))

    async def list_tasks(self, principal: Principal, task_filter: TaskFilter) -> TaskList:
        page = await self.repository.find_page(task_filter, principal.id, self.clock())
        return TaskList(
            tasks=self.read_models(page.tasks),
            total=page.total,
            skip=task_filter.skip,
            limit=task_filter.limit,
            next_cursor=encode_cursor(page.next_position) if page.next_position else None,
            total_exact=page.total_exact,
        )

    # -- creating ----------------------------------------------------------------------------

    async def create(self, principal: Principal, data: TaskCreate) -> TaskRead:
        if data.assignee_id is not None:
            await self._ensure_assignable(principal, data.assignee_id)
        if data.depends_on:
            visible = await self.repository.visible_ids(data.depends_on, principal.id)
            missing = [task_id for task_id in data.depends_on if task_id not in visible]
            if missing:
                raise TaskNotFound(missing[0])
        now = self.clock()
        status = data.status or TaskStatus.TODO
        task = await self.repository.add(
            Task(
                title=data.title,
                description=data.description,
                status=str(status),
                priority=str(data.priority),
                due_date=data.due_date,
                tags=data.tags,
                owner_id=principal.id,
                assignee_id=data.assignee_id,
                created_at=now,
                updated_at=now,
                completed_at=now if status is TaskStatus.DONE else None,
                version=1,
            )
        )
        # A new task has no dependents yet, so its edges cannot close a cycle.
        await self.repository.add_edges(task.id, data.depends_on, now)
        if status is TaskStatus.DONE:
            blockers = await self.repository.blocking_ids(task.id)
            if blockers:
                raise TaskBlocked(task.id, blockers)
        created = self.read_model(await self.repository.with_dependencies(task))
        await self.events.record(TASK_CREATED, created)
        return created

    async def create_once(self, principal: Principal, data: TaskCreate, key: str) -> TaskRead:
        """Create, or replay the answer already given to this (user, Idempotency-Key)."""
        fingerprint = request_fingerprint(data)
        now = self.clock()
        claimed = await self.repository.claim_idempotency_key(
            principal.id, key, fingerprint, now, now - IDEMPOTENCY_TTL
        )
        if not claimed:
            record = await self.repository.get_idempotency_record(principal.id, key)
            if record is None or record.response_body is None:
                # Only possible if the first request's record expired in between: retry once.
                return await self.create_once(principal, data, key)
            if record.request_hash != fingerprint:
                raise IdempotencyKeyReused()
            return TaskRead.model_validate(record.response_body)
        created = await self.create(principal, data)
        await self.repository.save_idempotent_response(
            principal.id, key, created.model_dump(mode="json")
        )
        return created

    # -- changing ----------------------------------------------------------------------------

    async def update(
        self, principal: Principal, task_id: int, data: TaskUpdate, if_match: IfMatch
    ) -> TaskRead:
        def target(current: TaskStatus) -> TaskStatus:
            return resolve_status(current, data.status, data.is_completed) or current

        return await self._change(principal, task_id, if_match, data.changes(), target)

    async def complete(self, principal: Principal, task_id: int, if_match: IfMatch) -> TaskRead:
        return await self._change(principal, task_id, if_match, {}, lambda _: TaskStatus.DONE)

    async def reopen(self, principal: Principal, task_id: int, if_match: IfMatch) -> TaskRead:
        def target(current: TaskStatus) -> TaskStatus:
            return TaskStatus.TODO if current is TaskStatus.DONE else current

        return await self._change(principal, task_id, if_match, {}, target)

    async def toggle(self, principal: Principal, task_id: int, if_match: IfMatch) -> TaskRead:
        def target(current: TaskStatus) -> TaskStatus:
            return TaskStatus.TODO if current is TaskStatus.DONE else TaskStatus.DONE

        return await self._change(principal, task_id, if_match, {}, target)

    async def _change(
        self,
        principal: Principal,
        task_id: int,
        if_match: IfMatch,
        fields: Mapping[str, Any],
        status_rule: StatusRule,
    ) -> TaskRead:
        # The row lock makes read-check-write atomic: of two writers with the same If-Match,
        # the second reads the first one's new version and fails the precondition.
        row = await self.get_visible(principal, task_id, lock=True)
        task = row.task
        check_if_match(task, if_match)
        values = {name: value for name, value in fields.items() if getattr(task, name) != value}
        if values and task.owner_id != principal.id:
            raise OwnerOnly("change fields other than the status")
        if values.get("assignee_id") is not None:
            await self._ensure_assignable(principal, values["assignee_id"])
        now = self.clock()
        current = TaskStatus(task.status)
        target = status_rule(current)
        values.update(status_changes(current, target, now))
        if target is TaskStatus.DONE and current is not TaskStatus.DONE:
            blockers = await self.repository.blocking_ids(task.id)
            if blockers:
                raise TaskBlocked(task.id, blockers)
        if not values:
            return self.read_model(row)
        previous_assignee = task.assignee_id
        values["updated_at"] = now
        changed = self.read_model(await self.repository.update(task, values))
        if "assignee_id" in values:
            await self.events.record(TASK_ASSIGNED, changed, previous_assignee_id=previous_assignee)
        elif target is TaskStatus.DONE and current is not TaskStatus.DONE:
            await self.events.record(TASK_COMPLETED, changed)
        else:
            await self.events.record(TASK_UPDATED, changed)
        if (target is TaskStatus.DONE) != (current is TaskStatus.DONE):
            # Tasks waiting on this one are blocked or unblocked by the change.
            await self._record_updated(await self.repository.dependent_ids([changed.id]))
        return changed

    async def delete(self, principal: Principal, task_id: int, if_match: IfMatch) -> None:
        row = await self.get_visible(principal, task_id, lock=True)
        task = row.task
        if task.owner_id != principal.id:
            raise OwnerOnly("delete it")
        check_if_match(task, if_match)
        last = self.read_model(row)
        dependents = await self.repository.dependent_ids([task.id])
        await self.repository.delete_one(task.id, self.clock())
        await self.events.record(TASK_DELETED, last)
        await self._record_updated(dependents)

    async def _record_updated(self, task_ids: Sequence[int]) -> None:
        """`task.updated` for tasks changed as a side effect (dependencies gone or done)."""
        if task_ids:
            for changed in self.read_models(await self.repository.get_many(task_ids)):
                await self.events.record(TASK_UPDATED, changed)

    async def remove_user(self, user_id: int) -> None:
        """A deleted account: their tasks go (edges too), tasks assigned to them lose the
        assignee. Each change publishes its event like any other."""
        now = self.clock()
        unassigned = self.read_models(await self.repository.unassign(user_id, now))
        for changed in unassigned:
            await self.events.record(TASK_ASSIGNED, changed, previous_assignee_id=user_id)
        owned = await self.repository.owned_ids(user_id)
        if not owned:
            return
        last = self.read_models(await self.repository.get_many(owned))
        dependents = await self.repository.dependent_ids(owned)
        await self.repository.delete_many(owned, now)
        for deleted in last:
            await self.events.record(TASK_DELETED, deleted)
        await self._record_updated(dependents)

    async def _ensure_assignable(self, principal: Principal, user_id: int) -> None:
        if not await self.user_directory.is_active_user(user_id, token=principal.token):
            raise AssigneeNotActive(user_id)

    # -- dependencies ------------------------------------------------------------------------

    async def add_dependency(
        self, principal: Principal, task_id: int, depends_on_id: int
    ) -> TaskRead:
        row = await self.get_visible(principal, task_id)
        task = row.task
        if task.owner_id != principal.id:
            raise OwnerOnly("change its dependencies")
        if depends_on_id == task_id:
            raise SelfDependency()
        if not await self.repository.visible_ids([depends_on_id], principal.id):
            raise TaskNotFound(depends_on_id)
        await self.repository.lock_for_new_edge(task_id, depends_on_id)
        # Under the lock, the graph searched here is the graph the new edge joins. The search
        # runs in the database; the edges are loaded only to name the cycle.
        if await self.repository.reaches(depends_on_id, task_id):
            path = find_path(
                await self.repository.edges_reachable_from(depends_on_id), depends_on_id, task_id
            )
            raise DependencyCycle([task_id, *(path or [depends_on_id, task_id])])
        now = self.clock()
        if not await self.repository.add_edge(task_id, depends_on_id, now):
            return self.read_model(row)
        changed = self.read_model(await self.repository.update(task, {"updated_at": now}))
        await self.events.record(TASK_UPDATED, changed)
        return changed

    async def remove_dependency(
        self, principal: Principal, task_id: int, depends_on_id: int
    ) -> None:
        task = (await self.get_visible(principal, task_id)).task
        if task.owner_id != principal.id:
            raise OwnerOnly("change its dependencies")
        if not await self.repository.remove_edge(task_id, depends_on_id):
            raise DependencyNotFound(task_id, depends_on_id)
        changed = await self.repository.update(task, {"updated_at": self.clock()})
        await self.events.record(TASK_UPDATED, self.read_model(changed))

    async def dependencies(
        self, principal: Principal, task_id: int, *, limit: int = DEPENDENCIES_DEFAULT_LIMIT
    ) -> TaskDependencies:
        task = (await self.get_visible(principal, task_id)).task
        depends_on, depends_on_total = await self.repository.visible_dependencies(
            task.id, principal.id, limit=limit
        )
        dependents, dependents_total = await self.repository.visible_dependents(
            task.id, principal.id, limit=limit
        )
        return TaskDependencies(
            depends_on=self.read_models(depends_on),
            dependents=self.read_models(dependents),
            depends_on_total=depends_on_total,
            dependents_total=dependents_total,
            limit=limit,
        )

    async def dependency_tree(
        self, principal: Principal, task_id: int, depth: int
    ) -> DependencyTreeNode:
        root = (await self.get_visible(principal, task_id)).task
        edges = await self.repository.tree_edges(root.id, depth)
        children: dict[int, list[int]] = {}
        for source, target in sorted(edges):
            children.setdefault(source, []).append(target)
        node_ids = sorted({root.id, *children, *(t for ts in children.values() for t in ts)})
        rows = {row.task.id: row for row in await self.repository.get_many(node_ids)}

        def build(node_id: int, level: int) -> DependencyTreeNode:
            row = rows[node_id]
            task = row.task
            visible = principal.id in (task.owner_id, task.assignee_id)
            expand = visible and level < depth
            return DependencyTreeNode(
                id=task.id,
                visible=visible,
                title=task.title if visible else None,
                status=TaskStatus(task.status),
                priority=TaskPriority(task.priority) if visible else None,
                is_completed=task.status == TaskStatus.DONE,
                blocked=row.blocked,
                truncated=bool(row.depends_on) and not expand,
                dependencies=[build(child, level + 1) for child in children.get(node_id, [])]
                if expand
                else [],
            )

        return build(root.id, 0)
