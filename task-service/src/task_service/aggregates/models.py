"""Running counts of every user's tasks by status and priority, kept by the database itself."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Identity, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from task_service.database import Base


class TaskTally(Base):
    """A change to a user's task counts: `tasks` more (or fewer, when negative) tasks with this
    status and priority, owned by `user_id` (`owned`) or assigned to them by someone else.

    Rows are written only by statement triggers on `task` (migration 0003_h16b), in the same
    transaction as the change, so the counts are exact and never waited for; they are only ever
    inserted, so concurrent writers never contend for a counter row. A user's counts are the
    sums of their rows; reading folds them back into one row per group once they pile up
    (`AggregateRepository.compact`).
    """

    __tablename__ = "task_tally"
    __table_args__ = (Index("ix_task_tally_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    owned: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    tasks: Mapped[int] = mapped_column(BigInteger)
