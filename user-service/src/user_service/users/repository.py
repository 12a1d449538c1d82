"""Queries on user accounts (the only place they are written)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, func, or_, select
from taskflow_kit.db import plan_rest_of_transaction_per_call
from taskflow_kit.repository import RepositoryBase, like_pattern

from user_service.users.models import User


class UserRepository(RepositoryBase[User]):
    model = User

    async def get_by_login(self, identifier: str) -> User | None:
        """The user whose username or email equals `identifier`, ignoring case.

        Usernames cannot contain `@` and emails must, so at most one row matches.
        """
        lowered = identifier.lower()
        statement = select(User).where(
            or_(func.lower(User.username) == lowered, func.lower(User.email) == lowered)
        )
        return (await self.session.execute(statement)).scalars().first()

    async def get_for_share(self, user_id: int) -> User | None:
        """The user's row, re-read and locked `FOR SHARE` until the caller's transaction ends.

        Issuing a token from this read is safe against a concurrent demotion or deactivation:
        that change either committed before the read (and is seen here) or waits for the
        token's transaction, so its revocation event is younger than the token."""
        statement = (
            select(User)
            .where(User.id == user_id)
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalars().first()

    async def taken_fields(
        self, *, email: str | None, username: str | None, exclude_id: int | None = None
    ) -> tuple[bool, bool]:
        """(email taken, username taken) by another user, ignoring case."""
        conditions = []
        if email is not None:
            conditions.append(func.lower(User.email) == email.lower())
        if username is not None:
            conditions.append(func.lower(User.username) == username.lower())
        if not conditions:
            return False, False
        statement = select(User.email, User.username).where(or_(*conditions))
        if exclude_id is not None:
            statement = statement.where(User.id != exclude_id)
        rows = (await self.session.execute(statement)).all()
        email_taken = email is not None and any(r.email.lower() == email.lower() for r in rows)
        username_taken = username is not None and any(
            r.username.lower() == username.lower() for r in rows
        )
        return email_taken, username_taken

    def _directory_query(
        self, q: str | None, *, include_inactive: bool, search_email: bool
    ) -> Select[User]:
        statement = select(User)
        if not include_inactive:
            statement = statement.where(User.is_active.is_(True))
        if q:
            pattern = like_pattern(q)
            fields = [User.username, User.full_name, *([User.email] if search_email else [])]
            statement = statement.where(
                or_(*(field.ilike(pattern, escape="\\") for field in fields))
            )
        return statement

    async def directory(
        self,
        *,
        q: str | None,
        skip: int,
        limit: int,
        include_inactive: bool,
        search_email: bool | None = None,
    ) -> Sequence[User]:
        """Users matching `q` in username or full name, ordered by username.

        Email is searched only in the administrators' view (`search_email`, by default the same
        as `include_inactive`): the public profile hides the email, so `q=@corp.com` must not
        list a company's users to anyone else.
        """
        statement = (
            self._directory_query(
                q,
                include_inactive=include_inactive,
                search_email=include_inactive if search_email is None else search_email,
            )
            # lower(username) is unique (uq_user_account_lower_username): no tie to break, and
            # that index gives the order, so a page reads `skip + limit` entries of it.
            .order_by(func.lower(User.username))
            .offset(skip)
            .limit(limit)
        )
        # Planned for its values (this database keeps one generic plan for everything else,
        # migration 0004_h16e): a rare term is a trigram bitmap, a common one a walk of the
        # username index, and one cached plan would be wrong for one of them.
        await plan_rest_of_transaction_per_call(self.session)
        return (await self.session.execute(statement)).scalars().all()
