"""The rules of tasks themselves: visibility, who may change what, status and its blockers.

The dependency graph's rules live in `graph_service`, idempotent creation in `idempotency`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from taskflow_kit.auth import Principal
from taskflow_kit.outbox import Outbox
from taskflow_kit.resilience import ResilientClient

from task_service.projects.errors import ProjectNotFound
from task_service.projects.models import MANAGERS, ProjectRole
from task_service.projects.repository import ProjectRepository
from task_service.tasks.cursor import encode_cursor
from task_service.tasks.errors import (
    AssigneeNotActive,
    AssigneeNotMember,
    DependencyOutsideProject,
    OwnerOnly,
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
from task_service.tasks.graph_repository import DependencyGraphRepository
from task_service.tasks.models import TaskStatus
from task_service.tasks.repository import TaskRepository
from task_service.tasks.schemas import (
    TaskCreate,
    TaskFilter,
    TaskList,
    TaskRead,
    TaskUpdate,
    resolve_status,
)
from task_service.users.directory import UserDirectory
from task_service.users.repository import KnownUserRepository

# None: no If-Match precondition (or `*`); otherwise the versions the client accepts.
IfMatch = frozenset[int] | None
StatusRule = Callable[[TaskStatus], TaskStatus]


def check_if_match(task: TaskRead, if_match: IfMatch) -> None:
    if if_match is not None and task.version not in if_match:
        raise VersionMismatch(task.version)


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
    """Task rules over one connection; every change records its `task.*` event in the same
    transaction."""

    def __init__(
        self,
        connection: asyncpg.Connection,
        *,
        user_client: ResilientClient,
        outbox: Outbox,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = TaskRepository(connection)
        self.graph = DependencyGraphRepository(connection)
        self.user_directory = UserDirectory(
            client=user_client, known=KnownUserRepository(connection)
        )
        self.events = TaskEvents(connection, outbox)
        self.projects = ProjectRepository(connection)
        self.clock = clock

    # -- reading -----------------------------------------------------------------------------

    async def get_visible(
        self, principal: Principal, task_id: int, *, lock: bool = False
    ) -> TaskRead:
        """The task as the API shows it; 404 unless the caller may see it (a personal task's
        owner or assignee, a project task's members)."""
        task = await self.repository.get_visible(task_id, principal.id, lock=lock)
        if task is None:
            raise TaskNotFound(task_id)
        return task

    async def list_tasks(self, principal: Principal, task_filter: TaskFilter) -> TaskList:
        page = await self.repository.find_page(task_filter, principal.id, self.clock())
        project_id = task_filter.project_id
        # The listing checked membership itself; an empty answer is asked once more whether
        # the project is one of the caller's, so that a non-member hears 404 as for a task.
        if (
            project_id is not None
            and not page.tasks
            and await self.projects.get_for_member(project_id, principal.id) is None
        ):
            raise ProjectNotFound(project_id)
        return TaskList.model_construct(
            tasks=page.tasks,
            total=page.total,
            skip=task_filter.skip,
            limit=task_filter.limit,
            next_cursor=encode_cursor(page.next_position) if page.next_position else None,
            total_exact=page.total_exact,
        )

    # -- creating ----------------------------------------------------------------------------

    async def create(self, principal: Principal, data: TaskCreate) -> TaskRead:
        if data.project_id is not None:
            await self.member_access(principal, data.project_id, data.assignee_id)
        if data.assignee_id is not None:
            await self._ensure_assignable(principal, data.assignee_id)
        if data.depends_on:
            visible = await self.repository.visible_ids(data.depends_on, principal.id)
            missing = [task_id for task_id in data.depends_on if task_id not in visible]
            if missing:
                raise TaskNotFound(missing[0])
            outside = [t for t in data.depends_on if visible[t] != data.project_id]
            if outside:
                raise DependencyOutsideProject(outside[0], "depends_on")
        now = self.clock()
        status = data.status or TaskStatus.TODO
        created = await self.repository.insert(
            {
                "title": data.title,
                "description": data.description,
                "status": str(status),
                "priority": str(data.priority),
                "due_date": data.due_date,
                "tags": data.tags,
                "owner_id": principal.id,
                "assignee_id": data.assignee_id,
                "project_id": data.project_id,
                "completed_at": now if status is TaskStatus.DONE else None,
            },
            now,
        )
        if data.depends_on:
            # A new task has no dependents yet, so its edges cannot close a cycle.
            await self.graph.add_edges(created.id, data.depends_on, now)
            if status is TaskStatus.DONE:
                blockers = await self.graph.blocking_ids(created.id)
                if blockers:
                    raise TaskBlocked(created.id, blockers)
            created = await self.get_visible(principal, created.id)
        await self.events.record(TASK_CREATED, created)
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
        task = await self.get_visible(principal, task_id, lock=True)
        check_if_match(task, if_match)
        values = {name: value for name, value in fields.items() if getattr(task, name) != value}
        if task.project_id is not None:
            # Every member edits every field of a project's task.
            await self.member_access(
                principal, task.project_id, values.get("assignee_id"), task_id=task.id
            )
        elif values and task.owner_id != principal.id:
            raise OwnerOnly("change fields other than the status")
        if values.get("assignee_id") is not None:
            await self._ensure_assignable(principal, values["assignee_id"])
        now = self.clock()
        current = task.status
        target = status_rule(current)
        values.update(status_changes(current, target, now))
        if target is TaskStatus.DONE and current is not TaskStatus.DONE:
            blockers = await self.graph.blocking_ids(task.id)
            if blockers:
                raise TaskBlocked(task.id, blockers)
        if not values:
            return task
        values["updated_at"] = now
        changed = await self.repository.update(task.id, values)
        if "assignee_id" in values:
            await self.events.record(TASK_ASSIGNED, changed, previous_assignee_id=task.assignee_id)
        elif target is TaskStatus.DONE and current is not TaskStatus.DONE:
            await self.events.record(TASK_COMPLETED, changed)
        else:
            await self.events.record(TASK_UPDATED, changed)
        if (target is TaskStatus.DONE) != (current is TaskStatus.DONE):
            # Tasks waiting on this one are blocked or unblocked by the change.
            await self.record_updated(await self.repository.dependent_ids([changed.id]))
        return changed

    async def delete(self, principal: Principal, task_id: int, if_match: IfMatch) -> None:
        # The tasks that depend on this one are locked first (the repository's lock order: a
        # completion of one of them holds it and then share-locks this one).
        await self.repository.lock_dependents([task_id], visible_to=principal.id)
        task = await self.get_visible(principal, task_id, lock=True)
        if task.project_id is not None:
            role = await self.member_access(principal, task.project_id, task_id=task.id)
            if task.owner_id != principal.id and role not in MANAGERS:
                raise OwnerOnly("delete it (or the project's owner or admins)")
        elif task.owner_id != principal.id:
            raise OwnerOnly("delete it")
        check_if_match(task, if_match)
        dependents = await self.repository.delete([task.id], self.clock())
        await self.events.record(TASK_DELETED, task)
        await self.record_updated(dependents)

    async def record_updated(self, task_ids: Sequence[int]) -> None:
        """`task.updated` for tasks changed as a side effect (dependencies gone or done)."""
        if task_ids:
            for changed in await self.repository.get_many(task_ids):
                await self.events.record(TASK_UPDATED, changed)

    async def member_access(
        self,
        principal: Principal,
        project_id: int,
        assignee_id: int | None = None,
        *,
        task_id: int | None = None,
    ) -> ProjectRole:
        """The caller's role in the project, for a write to one of its tasks: their membership
        (and a new assignee's) is key-share locked until the transaction ends, so a removal
        waits for this write and then sees it (and unassigns what it assigned). Not a member
        (any more): 404 for the task, or for the project when creating."""
        users = [principal.id] if assignee_id is None else [principal.id, assignee_id]
        roles = await self.projects.lock_membership(project_id, users)
        role = roles.get(principal.id)
        if role is None:
            raise TaskNotFound(task_id) if task_id is not None else ProjectNotFound(project_id)
        if assignee_id is not None and assignee_id not in roles:
            raise AssigneeNotMember(assignee_id, project_id)
        return role

    async def unassign_in_project(self, project_id: int, user_id: int, audience: list[int]) -> None:
        """A member left `project_id`: its tasks assigned to them lose the assignee."""
        for changed in await self.repository.unassign(user_id, self.clock(), project_id=project_id):
            await self.events.record(
                TASK_ASSIGNED, changed, previous_assignee_id=user_id, audience=audience
            )

    async def unassign_from_projects(self, user_id: int) -> None:
        """A deactivated account: every project task assigned to it loses the assignee."""
        for changed in await self.repository.unassign_from_projects(user_id, self.clock()):
            await self.events.record(TASK_ASSIGNED, changed, previous_assignee_id=user_id)

    async def remove_user(self, user_id: int) -> None:
        """A deleted account: their personal tasks go (edges too), tasks assigned to them lose
        the assignee. Each change publishes its event like any other. (Their memberships are
        ended first, by `ProjectService.remove_user`.)"""
        now = self.clock()
        for changed in await self.repository.unassign(user_id, now):
            await self.events.record(TASK_ASSIGNED, changed, previous_assignee_id=user_id)
        owned = await self.repository.owned_ids(user_id)
        if not owned:
            return
        await self.repository.lock_dependents(owned, visible_to=None)
        last = await self.repository.get_many(owned)
        dependents = await self.repository.delete(owned, now)
        for deleted in last:
            await self.events.record(TASK_DELETED, deleted)
        await self.record_updated(dependents)

    async def _ensure_assignable(self, principal: Principal, user_id: int) -> None:
        if not await self.user_directory.is_active_user(user_id, token=principal.token):
            raise AssigneeNotActive(user_id)
