"""The user account table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, func, true
from sqlalchemy.orm import Mapped, mapped_column

from user_service.database import Base

BIGINT_MAX = 2**63 - 1  # the largest id the column can hold


class User(Base):
    __tablename__ = "user_account"  # "user" is a reserved word in PostgreSQL

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    username: Mapped[str] = mapped_column(String(50))
    full_name: Mapped[str | None] = mapped_column(String(200))
    hashed_password: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    is_superuser: Mapped[bool] = mapped_column(default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


# Uniqueness is case-insensitive and enforced by the database, so concurrent registrations
# cannot both win; the names are what the service maps a unique violation back to.
EMAIL_UNIQUE_INDEX = "uq_user_account_lower_email"
USERNAME_UNIQUE_INDEX = "uq_user_account_lower_username"
Index(EMAIL_UNIQUE_INDEX, func.lower(User.email), unique=True)
Index(USERNAME_UNIQUE_INDEX, func.lower(User.username), unique=True)
# The directory's substring search (migration 0003_h16b; only where pg_trgm is available).
Index(
    "ix_user_account_names_trgm",
    User.username,
    User.full_name,
    postgresql_using="gin",
    postgresql_ops={"username": "gin_trgm_ops", "full_name": "gin_trgm_ops"},
)
Index(
    "ix_user_account_email_trgm",
    User.email,
    postgresql_using="gin",
    postgresql_ops={"email": "gin_trgm_ops"},
)
