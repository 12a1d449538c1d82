"""Dependencies of the auth routes."""

from __future__ import annotations

import json
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from taskflow_kit.db import ConnectionDep, TransactionDep
from taskflow_kit.errors import BadRequest

from user_service.auth.budgets import RouteBudgets
from user_service.auth.cookies import check_same_origin
from user_service.auth.schemas import LoginRequest
from user_service.auth.service import AuthService
from user_service.auth.throttle import LoginThrottle, client_address
from user_service.config import Settings
from user_service.state import State, StateDep

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def get_login_throttle(state: StateDep) -> LoginThrottle:
    return state.login_throttle


def _auth_service(state: State, connection: asyncpg.Connection) -> AuthService:
    return AuthService(
        connection,
        hasher=state.password_hasher,
        throttle=state.login_throttle,
        issuer=state.token_issuer,
        outbox=state.outbox,
    )


async def get_auth_service(state: StateDep, connection: TransactionDep) -> AuthService:
    """The service in the request's transaction (committed before the response)."""
    return _auth_service(state, connection)


async def get_auth_service_on_connection(state: StateDep, connection: ConnectionDep) -> AuthService:
    """The service on the request's connection with no transaction: the route opens its own
    (`auth.router.rotate`, which commits a reuse's revocation although the request fails)."""
    return _auth_service(state, connection)


async def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_client_address(request: Request, settings: SettingsDep) -> str:
    return client_address(
        request,
        trust_forwarded_for=settings.trust_forwarded_for,
        proxy_hops=settings.forwarded_for_proxy_hops,
    )


ClientAddressDep = Annotated[str, Depends(get_client_address)]


async def get_route_budgets(state: StateDep) -> RouteBudgets:
    return state.route_budgets


RouteBudgetsDep = Annotated[RouteBudgets, Depends(get_route_budgets)]


def address_budget(route: str) -> Any:
    """A route dependency that spends one request of `route`'s per-address budget."""

    async def spend(budgets: RouteBudgetsDep, address: ClientAddressDep) -> None:
        await budgets.spend(f"{route}:address", address)

    return Depends(spend)


def browser_request(request: Request, settings: SettingsDep) -> None:
    """The CSRF check of the cookie-session routes (see `auth.cookies`)."""
    check_same_origin(request, allowed_origins=settings.session_allowed_origins)


async def login_credentials(request: Request) -> LoginRequest:
    """Credentials from a JSON body or from the OAuth2 password form (Swagger's Authorize).

    Parsed by hand because FastAPI binds one body type per route; both land in `LoginRequest`,
    so validation and its (input-free) error messages are the same either way.
    """
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    data: Any
    if content_type in _FORM_TYPES:
        form = await request.form()
        data = {key: form.get(key) for key in ("username", "password") if key in form}
    else:
        body = await request.body()
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RequestValidationError(
                [{"loc": ("body",), "msg": "body must be JSON or a form", "type": "json_invalid"}]
            ) from None
        except RecursionError:
            # Nested deeper than the parser goes: answered as FastAPI answers it on other routes.
            raise BadRequest("There was an error parsing the body") from None
    try:
        return LoginRequest.model_validate(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
AuthServiceOnConnectionDep = Annotated[AuthService, Depends(get_auth_service_on_connection)]
LoginThrottleDep = Annotated[LoginThrottle, Depends(get_login_throttle)]
LoginCredentialsDep = Annotated[LoginRequest, Depends(login_credentials)]
