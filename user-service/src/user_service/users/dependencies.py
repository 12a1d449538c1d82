"""Dependencies of the users routes: the service, and the caller loaded from the database.

A route that only reads gets them over a pooled connection with no transaction; a route that
writes, over one transaction that the kit's `get_transaction` commits before the response, and
reads the caller in that same transaction (one connection per request either way)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends
from taskflow_kit.auth import Principal, PrincipalDep
from taskflow_kit.db import ConnectionDep, TransactionDep
from taskflow_kit.errors import Forbidden

from user_service.state import State, StateDep
from user_service.users.errors import InactiveOrUnknownUser
from user_service.users.models import BIGINT_MAX
from user_service.users.repository import UserRepository, UserRow
from user_service.users.service import UserService


def _user_service(state: State, connection: asyncpg.Connection) -> UserService:
    return UserService.for_connection(connection, outbox=state.outbox, hasher=state.password_hasher)


async def get_user_reader(state: StateDep, connection: ConnectionDep) -> UserService:
    return _user_service(state, connection)


async def get_user_writer(state: StateDep, connection: TransactionDep) -> UserService:
    return _user_service(state, connection)


async def _active_user(principal: Principal, connection: asyncpg.Connection) -> UserRow:
    """The caller's account, re-read from the database: a valid access token of a deleted or
    deactivated user is refused here even though it has not expired yet."""
    if not 1 <= principal.id <= BIGINT_MAX:  # not an id we could have issued
        raise InactiveOrUnknownUser()
    user = await UserRepository(connection).get(principal.id)
    if user is None or not user.is_active:
        raise InactiveOrUnknownUser()
    return user


async def current_user(principal: PrincipalDep, connection: ConnectionDep) -> UserRow:
    """The caller's active account, for a route that only reads."""
    return await _active_user(principal, connection)


async def current_user_in_transaction(
    principal: PrincipalDep, connection: TransactionDep
) -> UserRow:
    """The caller's active account, read in the transaction of a route that writes."""
    return await _active_user(principal, connection)


async def current_admin(
    user: Annotated[UserRow, Depends(current_user_in_transaction)],
) -> UserRow:
    """An administrator according to the database, not only to the token's claim (compare the
    kit's `claims_superuser`, which trusts the claim); read in the route's transaction (every
    administrator route writes)."""
    if not user.is_superuser:
        raise Forbidden("Administrator rights are required")
    return user


UserReaderDep = Annotated[UserService, Depends(get_user_reader)]
UserWriterDep = Annotated[UserService, Depends(get_user_writer)]
CurrentUserDep = Annotated[UserRow, Depends(current_user)]
CurrentUserInTransactionDep = Annotated[UserRow, Depends(current_user_in_transaction)]
CurrentAdminDep = Annotated[UserRow, Depends(current_admin)]
