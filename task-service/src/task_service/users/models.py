"""What task-service knows about users: a directory fed by user-service's `user.*` events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from task_service.database import Base


class KnownUser(Base):
    """One user as the latest `user.*` event described them (`deleted` once `user.deleted`)."""

    __tablename__ = "known_user"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str | None] = mapped_column(String(50))
    is_active: Mapped[bool] = mapped_column(Boolean)
    deleted: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # occurred_at of the event the row reflects: an older event never overwrites a newer one.
    event_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
