"""Tables of the tasks domain: tasks, dependency edges, and remembered idempotent creations."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    literal_column,
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


def _rank_sql(column: str, values: type[enum.StrEnum]) -> str:
    whens = " ".join(
        f"WHEN {{t}}{column} = '{value.value}' THEN {rank}" for rank, value in enumerate(values)
    )
    return f"CASE {whens} END"


# Sort keys as SQL with constants, not bound parameters: PostgreSQL matches an expression index
# only to the same expression, and a prepared statement's generic plan sees parameters. `{t}` is
# the table qualifier: "" in the index definitions, "task." in the repository's ORDER BY and
# keyset conditions, which use these very texts.
PRIORITY_RANK_SQL = _rank_sql("priority", TaskPriority)
STATUS_RANK_SQL = _rank_sql("status", TaskStatus)
TITLE_KEY_SQL = 'lower({t}title) COLLATE "C"'
# Tasks without a due date come last in both directions: ±infinity stands in for NULL (no due
# date a client can send is infinite), so each direction is one plain key.
DUE_ASC_SQL = "coalesce({t}due_date, CAST('infinity' AS timestamptz))"
DUE_DESC_SQL = "coalesce({t}due_date, CAST('-infinity' AS timestamptz))"


SEARCH_TEXT_SQL = "lower(title || E'\\n' || coalesce(description, ''))"


def index_sql(sort_key_sql: str) -> str:
    """A sort key's text as an index expression (unqualified)."""
    return sort_key_sql.format(t="")


class Task(Base):
    __tablename__ = "task"
    __table_args__ = (
        CheckConstraint(_one_of("status", TaskStatus), name="status_valid"),
        CheckConstraint(_one_of("priority", TaskPriority), name="priority_valid"),
        CheckConstraint(
            f"(status = '{TaskStatus.DONE}') = (completed_at IS NOT NULL)", name="completed_at_done"
        ),
        CheckConstraint("version >= 1", name="version_positive"),
        # One btree per sort key, owner first and id last: a user's page in any order is a
        # range of one index, whatever other users hold (issue 16; migration h16b_0003).
        # With the text a search checks (and project_id, for "personal"): a search's count that
        # walks the caller's tasks reads no row (migration 0010_h16i).
        Index(
            "ix_task_owner_created",
            "owner_id",
            "created_at",
            "id",
            postgresql_include=["project_id", "search_text"],
        ),
        Index("ix_task_owner_updated", "owner_id", "updated_at", "id"),
        Index("ix_task_owner_due_asc", "owner_id", text(index_sql(DUE_ASC_SQL)), "id"),
        Index("ix_task_owner_due_desc", "owner_id", text(index_sql(DUE_DESC_SQL)), "id"),
        Index("ix_task_owner_priority", "owner_id", text(index_sql(PRIORITY_RANK_SQL)), "id"),
        Index("ix_task_owner_status", "owner_id", text(index_sql(STATUS_RANK_SQL)), "id"),
        Index("ix_task_owner_title", "owner_id", text(index_sql(TITLE_KEY_SQL)), "id"),
        Index(
            "ix_task_assignee_created",
            "assignee_id",
            "created_at",
            "id",
            postgresql_where=text("assignee_id IS NOT NULL"),
        ),
        # The same sort keys led by project_id: one project's page in any order is a range of
        # one index, however many tasks the project or anyone else holds (migration 0004_h19).
        *(
            Index(
                f"ix_task_project_{name}",
                "project_id",
                key,
                "id",
                postgresql_where=text("project_id IS NOT NULL"),
            )
            for name, key in (
                ("created", "created_at"),
                ("updated", "updated_at"),
                ("due_asc", text(index_sql(DUE_ASC_SQL))),
                ("due_desc", text(index_sql(DUE_DESC_SQL))),
                ("priority", text(index_sql(PRIORITY_RANK_SQL))),
                ("status", text(index_sql(STATUS_RANK_SQL))),
                ("title", text(index_sql(TITLE_KEY_SQL))),
            )
        ),
        # Tags: the tags alone (migration 0007_h16f); the owner's part of a tag lookup is the
        # tag keys' GIN (0005_h16c, an expression index the migrations keep).
        Index("ix_task_tags", "tags", postgresql_using="gin"),
        # With btree_gin and pg_trgm (the migration falls back without them): text search
        # scoped by owner inside the GIN index, so one user's rows never cost another; over the
        # one lowered copy of the text that a search checks (migration 0008_h16g). What a
        # search counts among one user's own tasks is found by the owner-and-trigram keys' GIN
        # (0009_h16h, an expression index the migrations keep, like the tag keys'); this one
        # serves a page that walks no index range in order.
        Index(
            "ix_task_owner_search_trgm",
            "owner_id",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
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
    # NULL: a personal task (seen by its owner and assignee); else every member of the project.
    project_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("project.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # What a search checks: `search_text LIKE lower(pattern)` is `title ILIKE pattern OR
    # description ILIKE pattern` without lowering two texts per row checked. Never read back.
    search_text: Mapped[str] = mapped_column(Text, Computed(SEARCH_TEXT_SQL, persisted=True))


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


# A constant, not a parameter: partial indexes (`WHERE status <> 'done'`) match only a query
# whose condition the planner can prove implies theirs.
NOT_DONE = Task.status != literal_column(f"'{TaskStatus.DONE}'")
