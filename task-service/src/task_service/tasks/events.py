"""The events task-service publishes (`task.*`), written to its outbox with the change.

Every event carries the task as the API shows it after the change (before it, for
`task.deleted`), its owner and assignee, the previous assignee when that changed, and its
`audience`: who may see the task as this transaction leaves it (a project's members; a
personal task's owner and assignee). A consumer never has to call back: stats-service drops the
cached figures of the audience, the gateway pushes the event to their WebSockets (and tells a
removed assignee the task is gone).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from taskflow_kit.db import compile_statement
from taskflow_kit.events import TASK_STREAM
from taskflow_kit.outbox import Outbox, outbox_table

from task_service.database import Base
from task_service.projects.repository import ProjectRepository
from task_service.tasks.models import UserTaskVersion
from task_service.tasks.schemas import TaskRead

PRODUCER = "task-service"
OUTBOX = outbox_table(Base.metadata)

TASK_CREATED = "task.created"
TASK_UPDATED = "task.updated"
TASK_COMPLETED = "task.completed"
TASK_ASSIGNED = "task.assigned"
TASK_DELETED = "task.deleted"


def _record_statement() -> Insert:
    """The event's outbox row and, in the same statement (one round trip), a new version for
    each user it names. The versions' rows are locked in the order given (ascending ids), so two
    changes touching the same users cannot deadlock on them."""
    users = func.unnest(bindparam("user_ids", type_=ARRAY(BigInteger))).column_valued("user_id")
    bump = pg_insert(UserTaskVersion).from_select(
        ["user_id", "version"], select(users, literal(1, BigInteger))
    )
    bump = bump.on_conflict_do_update(
        index_elements=[UserTaskVersion.user_id],
        set_={"version": UserTaskVersion.version + 1},
    )
    columns = ("event_id", "stream", "type", "subject_id", "payload")
    return (
        pg_insert(OUTBOX)
        .values({name: bindparam(name) for name in columns})
        .add_cte(bump.cte("bumped"))
    )


_RECORD = compile_statement(_record_statement())


async def record_event(
    connection: asyncpg.Connection,
    outbox: Outbox,
    type_: str,
    subject_id: int,
    data: dict[str, Any],
    users: Iterable[int | None],
) -> None:
    """Insert the event into the outbox and bump the figures' version of `users`, in the
    caller's transaction and one statement (`project.*` events use it too)."""
    event = outbox.event(type_, subject_id, data)
    await _RECORD.execute(
        connection,
        user_ids=sorted({user_id for user_id in users if user_id is not None}),
        **outbox.row(event),
    )


def make_outbox() -> Outbox:
    return Outbox(OUTBOX, producer=PRODUCER, stream=TASK_STREAM)


class TaskEvents:
    """Records `task.*` events in the caller's transaction."""

    def __init__(self, connection: asyncpg.Connection, outbox: Outbox) -> None:
        self.connection = connection
        self.outbox = outbox
        self.projects = ProjectRepository(connection)

    async def record(
        self,
        type_: str,
        task: TaskRead,
        *,
        previous_assignee_id: int | None = None,
        audience: Iterable[int] | None = None,
    ) -> None:
        """The event, and a new version of the figures of every user it concerns (its audience
        and a removed assignee). `audience` is read from the project's members (in this
        transaction) unless the caller already has it."""
        if audience is None:
            if task.project_id is None:
                audience = [user for user in (task.owner_id, task.assignee_id) if user is not None]
            else:
                audience = await self.projects.member_ids(task.project_id)
        members = sorted(set(audience))
        await record_event(
            self.connection,
            self.outbox,
            type_,
            task.id,
            {
                "task": task.model_dump(mode="json"),
                "owner_id": task.owner_id,
                "assignee_id": task.assignee_id,
                "previous_assignee_id": previous_assignee_id,
                "project_id": task.project_id,
                "audience": members,
            },
            [*members, previous_assignee_id],
        )
