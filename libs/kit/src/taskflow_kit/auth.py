"""Local validation of access tokens: every service checks the shared-secret JWT itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from taskflow_kit.errors import Forbidden, Unauthorized
from taskflow_kit.tokens import InvalidTokenError, TokenConfig, decode_token

# Swagger's "Authorize" posts the OAuth2 password form here (through the gateway or directly).
TOKEN_URL = "/api/v1/auth/login"

oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the access token says."""

    id: int
    username: str | None
    is_superuser: bool
    token: str


def principal_from_token(config: TokenConfig, token: str) -> Principal:
    try:
        claims = decode_token(config, token, token_type="access")
        user_id = int(claims["sub"])
    except (InvalidTokenError, ValueError) as exc:
        raise Unauthorized("Invalid or expired token") from exc
    return Principal(
        id=user_id,
        username=claims.get("username"),
        is_superuser=bool(claims.get("is_superuser", False)),
        token=token,
    )


async def current_principal(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    """The authenticated caller; 401 with `WWW-Authenticate: Bearer` otherwise."""
    if not token:
        raise Unauthorized("Not authenticated")
    config: TokenConfig = request.app.state.token_config
    return principal_from_token(config, token)


async def current_superuser(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    if not principal.is_superuser:
        raise Forbidden("Administrator rights are required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
SuperuserDep = Annotated[Principal, Depends(current_superuser)]
