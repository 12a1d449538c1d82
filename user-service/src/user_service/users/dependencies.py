"""Dependencies of the users routes: the service, and the caller loaded from the database."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from taskflow_kit.auth import PrincipalDep
from taskflow_kit.db import SessionDep
from taskflow_kit.errors import Forbidden

from user_service.state import StateDep
from user_service.users.errors import InactiveOrUnknownUser
from user_service.users.models import BIGINT_MAX, User
from user_service.users.repository import UserRepository
from user_service.users.service import UserService


async def get_user_service(state: StateDep, session: SessionDep) -> UserService:
    return UserService.for_session(session, outbox=state.outbox, hasher=state.password_hasher)


async def current_user(principal: PrincipalDep, session: SessionDep) -> User:
    """The caller's account, re-read from the database: a valid access token of a deleted or
    deactivated user is refused here even though it has not expired yet."""
    if not 1 <= principal.id <= BIGINT_MAX:  # not an id we could have issued
        raise InactiveOrUnknownUser()
    user = await UserRepository(session).get(principal.id)
    if user is None or not user.is_active:
        raise InactiveOrUnknownUser()
    return user


async def current_admin(user: Annotated[User, Depends(current_user)]) -> User:
    """An administrator according to the database, not only to the token's claim (compare the
    kit's `claims_superuser`, which trusts the claim)."""
    if not user.is_superuser:
        raise Forbidden("Administrator rights are required")
    return user


UserServiceDep = Annotated[UserService, Depends(get_user_service)]
CurrentUserDep = Annotated[User, Depends(current_user)]
CurrentAdminDep = Annotated[User, Depends(current_admin)]
