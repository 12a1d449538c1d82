"""The rules of the projects domain: who may see, rename, delete a project and manage members.

A non-member is told a project does not exist (404), like a task they cannot see; a member
whose role does not allow an action gets 403. Every membership change holds the project's row
lock, so changes to one project's members are serialised, and every change records its
`project.*` event with the audience it concerns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from taskflow_kit.auth import Principal
from taskflow_kit.outbox import Outbox
from taskflow_kit.resilience import ResilientClient

from task_service.projects.errors import (
    AlreadyMember,
    MemberNotActive,
    MemberNotFound,
    OwnerCannotBeRemoved,
    ProjectNotFound,
    ProjectRoleRequired,
    ProjectVersionMismatch,
)
from task_service.projects.events import (
    PROJECT_CREATED,
    PROJECT_DELETED,
    PROJECT_MEMBER_ADDED,
    PROJECT_MEMBER_REMOVED,
    PROJECT_UPDATED,
    ProjectEvents,
)
from task_service.projects.models import MANAGERS, ProjectRole
from task_service.projects.repository import Membership, ProjectRepository, ProjectRow
from task_service.projects.schemas import (
    MemberCreate,
    MemberList,
    MemberRead,
    ProjectCreate,
    ProjectList,
    ProjectRead,
    ProjectUpdate,
)
from task_service.tasks.service import TaskService
from task_service.users.directory import UserDirectory

# None: no If-Match precondition (or `*`); otherwise the versions the client accepts.
IfMatch = frozenset[int] | None

REASON_REMOVED = "removed"
REASON_LEFT = "left"
REASON_ACCOUNT_DELETED = "account_deleted"


def to_read(membership: Membership) -> ProjectRead:
    project = membership.project
    return ProjectRead(
        id=project.id,
        name=project.name,
        description=project.description,
        owner_id=project.owner_id,
        created_at=project.created_at,
        updated_at=project.updated_at,
        version=project.version,
        role=membership.role,
        member_count=membership.member_count,
    )


class ProjectService:
    """Project rules over one connection; a membership change unassigns through the task rules
    of the same transaction (`tasks`)."""

    def __init__(
        self,
        connection: asyncpg.Connection,
        *,
        user_client: ResilientClient,
        outbox: Outbox,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = ProjectRepository(connection)
        self.tasks = TaskService(connection, user_client=user_client, outbox=outbox, clock=clock)
        # One directory for the transaction: a member added here is looked up as an assignee is.
        self.user_directory: UserDirectory = self.tasks.user_directory
        self.events = ProjectEvents(connection, outbox)
        self.clock = clock

    # -- projects ----------------------------------------------------------------------------

    async def membership(
        self, principal: Principal, project_id: int, *, lock: bool = False
    ) -> Membership:
        found = await self.repository.get_for_member(project_id, principal.id, lock=lock)
        if found is None:
            raise ProjectNotFound(project_id)
        return found

    async def create(self, principal: Principal, data: ProjectCreate) -> ProjectRead:
        now = self.clock()
        project = await self.repository.insert(
            name=data.name, description=data.description, owner_id=principal.id, now=now
        )
        await self.repository.add_member(project.id, principal.id, ProjectRole.OWNER, now)
        await self.events.record(PROJECT_CREATED, project, [principal.id])
        return to_read(Membership(project, ProjectRole.OWNER, 1))

    async def get(self, principal: Principal, project_id: int) -> ProjectRead:
        return to_read(await self.membership(principal, project_id))

    async def list_projects(self, principal: Principal) -> ProjectList:
        memberships = await self.repository.list_for_member(principal.id)
        return ProjectList(projects=[to_read(membership) for membership in memberships])

    async def update(
        self, principal: Principal, project_id: int, data: ProjectUpdate, if_match: IfMatch
    ) -> ProjectRead:
        membership = await self.membership(principal, project_id, lock=True)
        if membership.role not in MANAGERS:
            raise ProjectRoleRequired("rename it", "owner or admins")
        project = membership.project
        if if_match is not None and project.version not in if_match:
            raise ProjectVersionMismatch(project.version)
        values = {
            name: value for name, value in data.changes().items() if getattr(project, name) != value
        }
        if not values:
            return to_read(membership)
        values["updated_at"] = self.clock()
        changed = await self.repository.update(project.id, values)
        await self.events.record(
            PROJECT_UPDATED, changed, await self.repository.member_ids(project_id)
        )
        return to_read(Membership(changed, membership.role, membership.member_count))

    async def delete(self, principal: Principal, project_id: int, if_match: IfMatch) -> None:
        membership = await self.membership(principal, project_id, lock=True)
        if membership.role is not ProjectRole.OWNER:
            raise ProjectRoleRequired("delete it", "owner")
        project = membership.project
        if if_match is not None and project.version not in if_match:
            raise ProjectVersionMismatch(project.version)
        await self._delete(project)

    async def _delete(self, project: ProjectRow) -> None:
        # The project's tasks go with it (ON DELETE CASCADE): one `project.deleted` tells every
        # member, instead of one `task.deleted` per task of a board that may hold 100k.
        audience = await self.repository.member_ids(project.id)
        await self.repository.delete(project.id)
        await self.events.record(PROJECT_DELETED, project, audience)

    # -- members -----------------------------------------------------------------------------

    async def members(self, principal: Principal, project_id: int) -> MemberList:
        await self.membership(principal, project_id)
        rows = await self.repository.members(project_id)
        return MemberList(
            members=[
                MemberRead(
                    user_id=row.user_id, username=row.username, role=row.role, added_at=row.added_at
                )
                for row in rows
            ]
        )

    async def add_member(
        self, principal: Principal, project_id: int, data: MemberCreate
    ) -> MemberRead:
        membership = await self.membership(principal, project_id, lock=True)
        if membership.role not in MANAGERS:
            raise ProjectRoleRequired("add members", "owner or admins")
        if not await self.user_directory.is_active_user(data.user_id, token=principal.token):
            raise MemberNotActive(data.user_id)
        role = ProjectRole(data.role)
        member = await self.repository.add_member(project_id, data.user_id, role, self.clock())
        if member is None:
            raise AlreadyMember(project_id, data.user_id)
        read = MemberRead(
            user_id=member.user_id,
            username=member.username,
            role=member.role,
            added_at=member.added_at,
        )
        await self.events.record(
            PROJECT_MEMBER_ADDED,
            membership.project,
            await self.repository.member_ids(project_id),
            member=read.model_dump(mode="json"),
        )
        return read

    async def remove_member(self, principal: Principal, project_id: int, user_id: int) -> None:
        """Remove a member (owner or admin), or leave (any member, about themselves)."""
        membership = await self.membership(principal, project_id, lock=True)
        leaving = user_id == principal.id
        if not leaving and membership.role not in MANAGERS:
            raise ProjectRoleRequired("remove other members", "owner or admins")
        project = membership.project
        if user_id == project.owner_id:
            raise OwnerCannotBeRemoved()
        if not await self._remove(project, user_id, REASON_LEFT if leaving else REASON_REMOVED):
            raise MemberNotFound(project_id, user_id)

    async def _remove(self, project: ProjectRow, user_id: int, reason: str) -> bool:
        """Delete the membership (it waits for the member's task writes in flight, which hold
        their membership row), then unassign them from the project's tasks."""
        if not await self.repository.remove_member(project.id, user_id):
            return False
        remaining = await self.repository.member_ids(project.id)
        await self.tasks.unassign_in_project(project.id, user_id, remaining)
        await self.events.record(
            PROJECT_MEMBER_REMOVED, project, [*remaining, user_id], user_id=user_id, reason=reason
        )
        return True

    # -- accounts ----------------------------------------------------------------------------

    async def remove_user(self, user_id: int) -> None:
        """A deleted account leaves every project. A project it owned passes to its earliest
        admin (else its earliest member); one with nobody left is deleted with its tasks."""
        for project_id, role in await self.repository.memberships_of(user_id):
            project = await self.repository.get_project(project_id)
            if project is None:
                continue
            if role is ProjectRole.OWNER:
                heir = await self.repository.successor(project_id, user_id)
                if heir is None:
                    await self._delete(project)
                    continue
                await self.repository.set_role(project_id, heir, ProjectRole.OWNER)
                project = await self.repository.update(
                    project_id, {"owner_id": heir, "updated_at": self.clock()}
                )
            await self._remove(project, user_id, REASON_ACCOUNT_DELETED)
            if role is ProjectRole.OWNER:
                await self.events.record(
                    PROJECT_UPDATED, project, await self.repository.member_ids(project_id)
                )

    async def deactivated(self, user_id: int) -> None:
        """A deactivated account keeps its memberships (a reactivated one is back on its
        boards; its tokens are void meanwhile), but the projects' tasks assigned to it are
        unassigned: nobody would do them."""
        await self.tasks.unassign_from_projects(user_id)
