"""Queries on user accounts (the only place they are written), on asyncpg.

Every statement is built with SQLAlchemy once, at import or the first time its shape is needed
(`compile_statement`), and executed on the caller's asyncpg connection: a request pays neither
SQLAlchemy's session and compilation nor a `PREPARE` (asyncpg caches the prepared statement per
connection). Rows come back as `UserRow`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, ColumnElement, String, bindparam, delete, func, or_, select
from sqlalchemy import insert as sql_insert
from sqlalchemy import update as sql_update
from sqlalchemy.orm import InstrumentedAttribute
from taskflow_kit.db import Statement, compile_statement
from taskflow_kit.repository import like_pattern

from user_service.users.models import User

USER_ID = bindparam("user_id", type_=BigInteger)

USER_COLUMNS = (
    User.id,
    User.email,
    User.username,
    User.full_name,
    User.hashed_password,
    User.is_active,
    User.is_superuser,
    User.created_at,
    User.updated_at,
)


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user account as stored (`USER_COLUMNS`, in that order)."""

    id: int
    email: str
    username: str
    full_name: str | None
    hashed_password: str
    is_active: bool
    is_superuser: bool
    created_at: datetime
    updated_at: datetime


def _user(row: asyncpg.Record | None) -> UserRow | None:
    return None if row is None else UserRow(*row)


def _taken(column: InstrumentedAttribute[str], value: str) -> ColumnElement[bool]:
    """Another account (not `exclude_id`, when given) holds `value` in `column`, ignoring case."""
    return (
        select(User.id)
        .where(
            func.lower(column) == bindparam(value, type_=String),
            User.id.is_distinct_from(bindparam("exclude_id", type_=BigInteger)),
        )
        .exists()
    )


_GET = compile_statement(select(*USER_COLUMNS).where(User.id == USER_ID))
_GET_FOR_SHARE = compile_statement(
    select(*USER_COLUMNS).where(User.id == USER_ID).with_for_update(read=True)
)
_LOGIN = bindparam("login", type_=String)
_GET_BY_LOGIN = compile_statement(
    select(*USER_COLUMNS).where(
        or_(func.lower(User.username) == _LOGIN, func.lower(User.email) == _LOGIN)
    )
)
# An absent email or username (NULL) matches no account.
_TAKEN = compile_statement(
    select(
        _taken(User.email, "email").label("email_taken"),
        _taken(User.username, "username").label("username_taken"),
    )
)
_INSERT = compile_statement(
    sql_insert(User)
    .values(
        email=bindparam("email"),
        username=bindparam("username"),
        full_name=bindparam("full_name"),
        hashed_password=bindparam("hashed_password"),
        is_active=True,
        is_superuser=False,
    )
    .returning(*USER_COLUMNS)
)
_DELETE = compile_statement(delete(User).where(User.id == USER_ID))

UPDATABLE = frozenset(
    {"email", "username", "full_name", "hashed_password", "is_active", "is_superuser"}
)


@lru_cache(maxsize=64)
def _update_statement(columns: tuple[str, ...]) -> Statement:
    """`UPDATE user_account SET <columns>, updated_at = now() ... RETURNING` the new row,
    compiled once per set of columns (a handful of sets occur)."""
    table = User.__table__
    return compile_statement(
        sql_update(User)
        .where(User.id == USER_ID)
        .values(
            {
                **{table.c[name]: bindparam(f"v_{name}") for name in columns},
                table.c.updated_at: func.now(),
            }
        )
        .returning(*USER_COLUMNS)
    )


@lru_cache(maxsize=8)
def _directory_statement(*, active_only: bool, search: bool, search_email: bool) -> Statement:
    """A page of the directory, compiled once per shape (six occur); `pattern`, `skip` and
    `limit` are its values."""
    statement = select(*USER_COLUMNS)
    if active_only:
        statement = statement.where(User.is_active.is_(True))
    if search:
        pattern = bindparam("pattern", type_=String)
        fields = [User.username, User.full_name, *([User.email] if search_email else [])]
        statement = statement.where(or_(*(field.ilike(pattern, escape="\\") for field in fields)))
    return compile_statement(
        # lower(username) is unique (uq_user_account_lower_username): no tie to break, and
        # that index gives the order, so a page reads `skip + limit` entries of it.
        statement.order_by(func.lower(User.username))
        .offset(bindparam("skip", type_=BigInteger))
        .limit(bindparam("limit", type_=BigInteger)),
        # Planned for its values (this database keeps one generic plan for everything else,
        # migration 0004_h16e): a rare term is a trigram bitmap, a common one a walk of the
        # username index, and one cached plan would be wrong for one of them.
        plan_per_call=True,
    )


class UserRepository:
    """User accounts on one asyncpg connection (the request's, in its transaction when it
    writes)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def get(self, user_id: int) -> UserRow | None:
        return _user(await _GET.fetchrow(self.connection, user_id=user_id))

    async def get_by_login(self, identifier: str) -> UserRow | None:
        """The user whose username or email equals `identifier`, ignoring case.

        Usernames cannot contain `@` and emails must, so at most one row matches.
        """
        return _user(await _GET_BY_LOGIN.fetchrow(self.connection, login=identifier.lower()))

    async def get_for_share(self, user_id: int) -> UserRow | None:
        """The user's row, read and locked `FOR SHARE` until the caller's transaction ends.

        Issuing a token from this read is safe against a concurrent demotion or deactivation:
        that change either committed before the read (and is seen here) or waits for the
        token's transaction, so its revocation event is younger than the token."""
        return _user(await _GET_FOR_SHARE.fetchrow(self.connection, user_id=user_id))

    async def taken_fields(
        self, *, email: str | None, username: str | None, exclude_id: int | None = None
    ) -> tuple[bool, bool]:
        """(email taken, username taken) by another user, ignoring case."""
        if email is None and username is None:
            return False, False
        row = await _TAKEN.fetchrow(
            self.connection,
            email=None if email is None else email.lower(),
            username=None if username is None else username.lower(),
            exclude_id=exclude_id,
        )
        assert row is not None  # a SELECT of two EXISTS returns one row
        return bool(row["email_taken"]), bool(row["username_taken"])

    async def insert(
        self, *, email: str, username: str, full_name: str | None, hashed_password: str
    ) -> UserRow:
        """A new active, non-administrator account. A taken email or username raises
        asyncpg's `UniqueViolationError` naming its index (`users.models`)."""
        row = await _INSERT.fetchrow(
            self.connection,
            email=email,
            username=username,
            full_name=full_name,
            hashed_password=hashed_password,
        )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return UserRow(*row)

    async def update(self, user_id: int, values: Mapping[str, Any]) -> UserRow | None:
        """Set `values` (and `updated_at`); the new row, None if there is no such user."""
        columns = tuple(sorted(values))
        unknown = set(columns) - UPDATABLE
        if not columns or unknown:
            raise ValueError(f"not updatable: {sorted(unknown) or 'nothing'}")
        fields = {f"v_{name}": values[name] for name in columns}
        return _user(
            await _update_statement(columns).fetchrow(self.connection, user_id=user_id, **fields)
        )

    async def delete(self, user_id: int) -> None:
        """Delete the account; its refresh tokens go with it (ON DELETE CASCADE)."""
        await _DELETE.execute(self.connection, user_id=user_id)

    async def directory(
        self,
        *,
        q: str | None,
        skip: int,
        limit: int,
        include_inactive: bool,
        search_email: bool | None = None,
    ) -> list[UserRow]:
        """Users matching `q` in username or full name, ordered by username.

        Email is searched only in the administrators' view (`search_email`, by default the same
        as `include_inactive`): the public profile hides the email, so `q=@corp.com` must not
        list a company's users to anyone else.
        """
        if search_email is None:
            search_email = include_inactive
        statement = _directory_statement(
            active_only=not include_inactive, search=bool(q), search_email=bool(q) and search_email
        )
        values: dict[str, Any] = {"skip": skip, "limit": limit}
        if q:
            values["pattern"] = like_pattern(q)
        rows = await statement.fetch(self.connection, **values)
        return [UserRow(*row) for row in rows]
