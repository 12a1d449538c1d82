"""The events task-service publishes about projects (`project.*`), through the same outbox and
stream as `task.*`, in the transaction of the change.

Every event names its `audience`: the user ids of the project's members as the change left
them (and, for a removal, the member who lost access), computed in the producing transaction.
The gateway pushes the event to those users' sockets and stats-service drops their cached
figures, with no lookup of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg
from taskflow_kit.outbox import Outbox

from task_service.projects.repository import ProjectRow
from task_service.tasks.events import record_event

PROJECT_CREATED = "project.created"
PROJECT_UPDATED = "project.updated"
PROJECT_DELETED = "project.deleted"
PROJECT_MEMBER_ADDED = "project.member_added"
PROJECT_MEMBER_REMOVED = "project.member_removed"


def project_summary(project: ProjectRow) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "owner_id": project.owner_id,
        "created_at": project.created_at.isoformat(),
        "updated_at": project.updated_at.isoformat(),
        "version": project.version,
    }


class ProjectEvents:
    """Records `project.*` events in the caller's transaction."""

    def __init__(self, connection: asyncpg.Connection, outbox: Outbox) -> None:
        self.connection = connection
        self.outbox = outbox

    async def record(
        self, type_: str, project: ProjectRow, audience: Iterable[int], **data: Any
    ) -> None:
        """Record the event; what its audience sees changed, so their figures get a new
        version too."""
        members = sorted(set(audience))
        await record_event(
            self.connection,
            self.outbox,
            type_,
            project.id,
            {
                "project": project_summary(project),
                "project_id": project.id,
                "audience": members,
                **data,
            },
            members,
        )
