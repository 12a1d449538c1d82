"""Tables of the projects domain: a project (a board a team shares) and its members."""

from __future__ import annotations

import enum
from datetime import datetime

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
from sqlalchemy.orm import Mapped, mapped_column

from task_service.database import Base


class ProjectRole(enum.StrEnum):
    """What a member may do: the owner everything, an admin manage members and rename, a
    member read and edit the project's tasks."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


MANAGERS = frozenset({ProjectRole.OWNER, ProjectRole.ADMIN})


class Project(Base):
    __tablename__ = "project"
    __table_args__ = (CheckConstraint("version >= 1", name="version_positive"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))


class ProjectMember(Base):
    """`user_id` is a member of `project_id` with `role`; the owner is a member too."""

    __tablename__ = "project_member"
    __table_args__ = (
        CheckConstraint(
            "role IN (" + ", ".join(repr(role.value) for role in ProjectRole) + ")",
            name="role_valid",
        ),
        # A member's projects (the project list, and every visibility check) by user first.
        Index("ix_project_member_user_id_project_id", "user_id", "project_id"),
    )

    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("project.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
