"""Every query of the projects domain, built with SQLAlchemy once and executed on the request's
asyncpg connection (like the tasks domain: see `task_service.tasks.repository`).

Membership is checked in the statement that reads the project (a join on `project_member`
with the caller's id), never by loading the project and looking afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from taskflow_kit.db import Statement, compile_statement

from task_service.projects.models import Project, ProjectMember, ProjectRole
from task_service.users.models import KnownUser

PROJECT_ID = bindparam("project_id", type_=BigInteger)
USER_ID = bindparam("user_id", type_=BigInteger)
USER_IDS = bindparam("user_ids", type_=ARRAY(BigInteger))
NOW = bindparam("now", type_=Project.updated_at.type)


def member_project_ids(user_id: Any) -> ColumnElement[Any]:
    """The ids of the projects `user_id` is a member of, as an array computed once per
    statement (an InitPlan): `project_id = ANY(...)` over it can use an index inside an OR,
    where `IN (subquery)` would turn into a filter over every row."""
    return func.array(
        select(ProjectMember.project_id).where(ProjectMember.user_id == user_id).scalar_subquery()
    )


def is_member(project_id: Any, user_id: Any) -> ColumnElement[bool]:
    """Whether `user_id` is a member of the project `project_id` (a column or a value)."""
    return (
        select(ProjectMember.user_id)
        .where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
        .exists()
    )


MEMBER_COUNT = (
    select(func.count())
    .select_from(ProjectMember)
    .where(ProjectMember.project_id == Project.id)
    .correlate(Project)
    .scalar_subquery()
)
PROJECT_COLUMNS = (
    Project.id,
    Project.name,
    Project.description,
    Project.owner_id,
    Project.created_at,
    Project.updated_at,
    Project.version,
)
# Who inherits a project whose owner's account is deleted: the earliest admin, else the
# earliest member.
SUCCESSION_ORDER = (
    case((ProjectMember.role == str(ProjectRole.ADMIN), 0), else_=1),
    ProjectMember.added_at,
    ProjectMember.user_id,
)


@dataclass(frozen=True, slots=True)
class ProjectRow:
    id: int
    name: str
    description: str | None
    owner_id: int
    created_at: datetime
    updated_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class Membership:
    """A project as one member sees it: the project, their role and how many members it has."""

    project: ProjectRow
    role: ProjectRole
    member_count: int


@dataclass(frozen=True, slots=True)
class MemberRow:
    user_id: int
    username: str | None
    role: ProjectRole
    added_at: datetime


def _project(row: asyncpg.Record) -> ProjectRow:
    return ProjectRow(*(row[column.key] for column in PROJECT_COLUMNS))


def _membership(row: asyncpg.Record) -> Membership:
    return Membership(_project(row), ProjectRole(row["role"]), int(row["member_count"]))


_FOR_MEMBER = (
    select(*PROJECT_COLUMNS, ProjectMember.role, MEMBER_COUNT.label("member_count"))
    .join(ProjectMember, ProjectMember.project_id == Project.id)
    .where(Project.id == PROJECT_ID, ProjectMember.user_id == USER_ID)
)
_GET_FOR_MEMBER = compile_statement(_FOR_MEMBER)
# FOR NO KEY UPDATE: membership changes of one project serialise on it, while task writes
# (whose foreign key to the project takes FOR KEY SHARE) never wait for it, nor it for them.
_GET_FOR_MEMBER_LOCKED = compile_statement(_FOR_MEMBER.with_for_update(of=Project, key_share=True))
_LIST_FOR_MEMBER = compile_statement(
    select(*PROJECT_COLUMNS, ProjectMember.role, MEMBER_COUNT.label("member_count"))
    .join(ProjectMember, ProjectMember.project_id == Project.id)
    .where(ProjectMember.user_id == USER_ID)
    .order_by(func.lower(Project.name), Project.id)
)
_GET_PROJECT = compile_statement(select(*PROJECT_COLUMNS).where(Project.id == PROJECT_ID))
_INSERT_PROJECT = compile_statement(
    insert(Project)
    .values(
        name=bindparam("v_name", type_=String),
        description=bindparam("v_description", type_=String),
        owner_id=USER_ID,
        created_at=NOW,
        updated_at=NOW,
        version=1,
    )
    .returning(*PROJECT_COLUMNS)
)
_DELETE_PROJECT = compile_statement(delete(Project).where(Project.id == PROJECT_ID))
_ADDED = (
    pg_insert(ProjectMember)
    .values(
        project_id=PROJECT_ID,
        user_id=USER_ID,
        role=bindparam("role", type_=String),
        added_at=NOW,
    )
    .on_conflict_do_nothing()
    .returning(ProjectMember.user_id, ProjectMember.role, ProjectMember.added_at)
    .cte("added")
)
_ADD_MEMBER = compile_statement(
    select(_ADDED.c.user_id, KnownUser.username, _ADDED.c.role, _ADDED.c.added_at).outerjoin(
        KnownUser, KnownUser.id == _ADDED.c.user_id
    )
)
_REMOVE_MEMBER = compile_statement(
    delete(ProjectMember)
    .where(ProjectMember.project_id == PROJECT_ID, ProjectMember.user_id == USER_ID)
    .returning(ProjectMember.user_id)
)
_SET_ROLE = compile_statement(
    update(ProjectMember)
    .where(ProjectMember.project_id == PROJECT_ID, ProjectMember.user_id == USER_ID)
    .values(role=bindparam("role", type_=String))
)
_MEMBERS = compile_statement(
    select(ProjectMember.user_id, KnownUser.username, ProjectMember.role, ProjectMember.added_at)
    .outerjoin(KnownUser, KnownUser.id == ProjectMember.user_id)
    .where(ProjectMember.project_id == PROJECT_ID)
    .order_by(ProjectMember.added_at, ProjectMember.user_id)
)
_MEMBER_IDS = compile_statement(
    select(ProjectMember.user_id)
    .where(ProjectMember.project_id == PROJECT_ID)
    .order_by(ProjectMember.user_id)
)
# The project's row is key-share locked before the membership rows, the order a project's
# deletion takes (its row, then its members by cascade): the task the caller then writes into
# the project would otherwise take the project's row (its foreign key) after the members', and
# wait for a deletion that waits for it. The join makes the order hold: no membership row is
# produced, and so locked, before the project's row was.
_LOCKED_PROJECT = (
    select(Project.id)
    .where(Project.id == PROJECT_ID)
    .with_for_update(read=True, key_share=True)
    .cte("locked_project")
)
_LOCK_MEMBERSHIP = compile_statement(
    select(ProjectMember.user_id, ProjectMember.role)
    .join(_LOCKED_PROJECT, _LOCKED_PROJECT.c.id == ProjectMember.project_id)
    .where(ProjectMember.user_id == any_(USER_IDS))
    .order_by(ProjectMember.user_id)
    .with_for_update(of=ProjectMember, read=True, key_share=True)
)
_MEMBERSHIPS_OF = compile_statement(
    select(Project.id, ProjectMember.role)
    .join(ProjectMember, ProjectMember.project_id == Project.id)
    .where(ProjectMember.user_id == USER_ID)
    .order_by(Project.id)
    .with_for_update(of=Project, key_share=True)
)
_PROJECT_IDS_OF = compile_statement(
    select(ProjectMember.project_id).where(ProjectMember.user_id == USER_ID)
)
_SUCCESSOR = compile_statement(
    select(ProjectMember.user_id)
    .where(ProjectMember.project_id == PROJECT_ID, ProjectMember.user_id != USER_ID)
    .order_by(*SUCCESSION_ORDER)
    .limit(1)
)

UPDATABLE = frozenset({"name", "description", "owner_id", "updated_at"})


@lru_cache(maxsize=32)
def _update_statement(columns: tuple[str, ...]) -> Statement:
    """`UPDATE project SET <columns>, version = version + 1 ... RETURNING` the new row."""
    table = Project.__table__
    return compile_statement(
        update(Project)
        .where(Project.id == PROJECT_ID)
        .values(
            {
                **{
                    table.c[name]: bindparam(f"v_{name}", type_=table.c[name].type)
                    for name in columns
                },
                table.c.version: Project.version + 1,
            }
        )
        .returning(*PROJECT_COLUMNS)
    )


class ProjectRepository:
    """Projects and memberships on one asyncpg connection."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    # -- projects ----------------------------------------------------------------------------

    async def get_for_member(
        self, project_id: int, user_id: int, *, lock: bool = False
    ) -> Membership | None:
        """The project if `user_id` is a member; `lock` takes the project's row lock, which
        every membership change holds, so changes to one project's members are serialised."""
        statement = _GET_FOR_MEMBER_LOCKED if lock else _GET_FOR_MEMBER
        row = await statement.fetchrow(self.connection, project_id=project_id, user_id=user_id)
        return None if row is None else _membership(row)

    async def list_for_member(self, user_id: int) -> list[Membership]:
        rows = await _LIST_FOR_MEMBER.fetch(self.connection, user_id=user_id)
        return [_membership(row) for row in rows]

    async def get_project(self, project_id: int) -> ProjectRow | None:
        row = await _GET_PROJECT.fetchrow(self.connection, project_id=project_id)
        return None if row is None else _project(row)

    async def insert(
        self, *, name: str, description: str | None, owner_id: int, now: datetime
    ) -> ProjectRow:
        row = await _INSERT_PROJECT.fetchrow(
            self.connection, v_name=name, v_description=description, user_id=owner_id, now=now
        )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return _project(row)

    async def update(self, project_id: int, values: Mapping[str, Any]) -> ProjectRow:
        """Apply `values` and bump the version (the caller holds the row lock)."""
        columns = tuple(sorted(values))
        unknown = set(columns) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        fields = {f"v_{name}": values[name] for name in columns}
        row = await _update_statement(columns).fetchrow(
            self.connection, project_id=project_id, **fields
        )
        assert row is not None  # the caller holds the row lock: it cannot have gone
        return _project(row)

    async def delete(self, project_id: int) -> None:
        """Delete the project; its members and its tasks (with their edges) go with it
        (ON DELETE CASCADE)."""
        await _DELETE_PROJECT.execute(self.connection, project_id=project_id)

    # -- members -----------------------------------------------------------------------------

    async def members(self, project_id: int) -> list[MemberRow]:
        rows = await _MEMBERS.fetch(self.connection, project_id=project_id)
        return [MemberRow(r[0], r[1], ProjectRole(r[2]), r[3]) for r in rows]

    async def member_ids(self, project_id: int) -> list[int]:
        return [row[0] for row in await _MEMBER_IDS.fetch(self.connection, project_id=project_id)]

    async def lock_membership(
        self, project_id: int, user_ids: Sequence[int]
    ) -> dict[int, ProjectRole]:
        """The roles of those of `user_ids` who are members, the project's row and their
        membership rows key-share locked (in that order): a removal (which deletes the row)
        waits for this transaction, so a task written by a member, or assigned to one, is never
        committed after that member's removal."""
        rows = await _LOCK_MEMBERSHIP.fetch(
            self.connection, project_id=project_id, user_ids=sorted(set(user_ids))
        )
        return {row[0]: ProjectRole(row[1]) for row in rows}

    async def add_member(
        self, project_id: int, user_id: int, role: ProjectRole, now: datetime
    ) -> MemberRow | None:
        """Insert the membership; None when the user already was a member."""
        row = await _ADD_MEMBER.fetchrow(
            self.connection, project_id=project_id, user_id=user_id, role=str(role), now=now
        )
        return None if row is None else MemberRow(row[0], row[1], ProjectRole(row[2]), row[3])

    async def remove_member(self, project_id: int, user_id: int) -> bool:
        row = await _REMOVE_MEMBER.fetchrow(self.connection, project_id=project_id, user_id=user_id)
        return row is not None

    async def set_role(self, project_id: int, user_id: int, role: ProjectRole) -> None:
        await _SET_ROLE.execute(
            self.connection, project_id=project_id, user_id=user_id, role=str(role)
        )

    async def memberships_of(self, user_id: int) -> list[tuple[int, ProjectRole]]:
        """(project id, role) of every project `user_id` belongs to, each project's row locked
        (in id order) like any membership change."""
        rows = await _MEMBERSHIPS_OF.fetch(self.connection, user_id=user_id)
        return [(row[0], ProjectRole(row[1])) for row in rows]

    async def project_ids_of(self, user_id: int) -> set[int]:
        rows = await _PROJECT_IDS_OF.fetch(self.connection, user_id=user_id)
        return {row[0] for row in rows}

    async def successor(self, project_id: int, leaving: int) -> int | None:
        user_id: int | None = await _SUCCESSOR.fetchval(
            self.connection, project_id=project_id, user_id=leaving
        )
        return user_id
