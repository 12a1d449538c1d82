"""Tables of the tasks domain: tasks, dependency edges, and remembered idempotent creations."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from task_service.database import Base


class TaskStatus(enum.StrEnum):
    """A task's state, in the order `sort_by=status` uses."""

    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"


class TaskPriority(enum.StrEnum):
    """A task's priority, lowest first (the order `sort_by=priority` uses)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


def _one_of(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(value.value) for value in values)})"


class Task(Base):
    __tablename__ = "task"
    __table_args__ = (
        CheckConstraint(_one_of("status", TaskStatus), name="status_valid"),
        CheckConstraint(_one_of("priority", TaskPriority), name="priority_valid"),
        CheckConstraint(
            f"(status = '{TaskStatus.DONE}') = (completed_at IS NOT NULL)", name="completed_at_done"
        ),
        CheckConstraint("version >= 1", name="version_positive"),
        Index("ix_task_owner_id", "owner_id"),
        Index("ix_task_assignee_id", "assignee_id"),
        Index("ix_task_status", "status"),
        Index("ix_task_due_date", "due_date"),
        Index("ix_task_created_at", "created_at"),
        Index("ix_task_tags", "tags", postgresql_using="gin"),
        Index(
            "ix_task_title_trgm",
            "title",
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops"},
        ),
        Index(
            "ix_task_description_trgm",
            "description",
            postgresql_using="gin",
            postgresql_ops={"description": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    due_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    owner_id: Mapped[int] = mapped_column(BigInteger)
    assignee_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))


class TaskDependency(Base):
    """Edge `task_id` → `depends_on_id`: the task cannot be done before the one it depends on."""

    __tablename__ = "task_dependency"
    __table_args__ = (
        CheckConstraint("task_id <> depends_on_id", name="not_self"),
        Index("ix_task_dependency_depends_on_id", "depends_on_id"),
    )

    task_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("task.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("task.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyRecord(Base):
    """A `POST /tasks/` remembered by (owner, Idempotency-Key): the request hash and the answer.

    A replay is always the 201 of the first creation, so only the body is kept. The table's
    `response_status` column is no longer mapped or written; it is dropped by a later migration,
    once no replica of the version that still writes it is running (docs/decisions.md).
    """

    __tablename__ = "idempotency_record"
    __table_args__ = (Index("ix_idempotency_record_created_at", "created_at"),)

    owner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UserTaskVersion(Base):
    """How many changes have touched a user's visible tasks: bumped in the transaction of every
    change that records a `task.*` event naming the user (owner, assignee, previous assignee).
    The aggregates route names it in its `ETag`, so stats-service can tell a cached figure from
    a stale one by asking, without the write waiting for its event to reach Redis."""

    __tablename__ = "user_task_version"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
