"""The events task-service publishes (`task.*`), written to its outbox with the change.

Every event carries the task as the API shows it after the change (before it, for
`task.deleted`), its owner and assignee, and the previous assignee when that changed, so a
consumer never has to call back: stats-service drops the cached figures of those users, the
gateway pushes the event to their WebSockets (and tells a removed assignee the task is gone).
"""

from __future__ import annotations

import asyncpg
from sqlalchemy import BigInteger, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from taskflow_kit.db import compile_statement
from taskflow_kit.events import TASK_STREAM
from taskflow_kit.outbox import Outbox, outbox_table

from task_service.database import Base
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


def make_outbox() -> Outbox:
    return Outbox(OUTBOX, producer=PRODUCER, stream=TASK_STREAM)


class TaskEvents:
    """Records `task.*` events in the caller's transaction."""

    def __init__(self, connection: asyncpg.Connection, outbox: Outbox) -> None:
        self.connection = connection
        self.outbox = outbox

    async def record(
        self, type_: str, task: TaskRead, *, previous_assignee_id: int | None = None
    ) -> None:
        """The event, and a new version of the figures of every user it names."""
        named = (task.owner_id, task.assignee_id, previous_assignee_id)
        event = self.outbox.event(
            type_,
            task.id,
            {
                "task": task.model_dump(mode="json"),
                "owner_id": task.owner_id,
                "assignee_id": task.assignee_id,
                "previous_assignee_id": previous_assignee_id,
            },
        )
        await _RECORD.execute(
            self.connection,
            user_ids=sorted({user_id for user_id in named if user_id is not None}),
            **self.outbox.row(event),
        )
