"""Local validation of access tokens: every service checks the shared-secret JWT itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from taskflow_kit.errors import Forbidden, Unauthorized
from taskflow_kit.revocation import RevocationList, RevocationsIncomplete
from taskflow_kit.tokens import InvalidTokenError, TokenConfig, decode_token, issued_at

# Ids are PostgreSQL bigints everywhere: a token naming anything else names no user we issued.
MAX_USER_ID = 2**63 - 1

# How long a request waits for a complete revocation map (being rebuilt) before its 503.
REVOCATIONS_WAIT = 2.0

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
    session_id: str | None = None
    issued_at: float = 0.0
    expires_at: float = 0.0


def principal_from_token(
    config: TokenConfig, token: str, revocations: RevocationList | None = None
) -> Principal:
    """The caller named by a valid access token; Unauthorized for a malformed, forged, expired
    or revoked one (the revocation list is in memory: no I/O here)."""
    try:
        claims = decode_token(config, token, token_type="access")
        user_id = int(claims["sub"])
        issued = issued_at(claims)
        expires_at = float(claims["exp"])
    except (InvalidTokenError, ValueError, TypeError) as exc:
        raise Unauthorized("Invalid or expired token") from exc
    if not 1 <= user_id <= MAX_USER_ID:
        raise Unauthorized("Invalid or expired token")
    session_id = claims.get("sid")
    session_id = str(session_id) if session_id is not None else None
    if revocations is not None and revocations.is_revoked(user_id, issued, session_id):
        raise Unauthorized("The token has been revoked; sign in again")
    return Principal(
        id=user_id,
        username=claims.get("username"),
        is_superuser=bool(claims.get("is_superuser", False)),
        token=token,
        session_id=session_id,
        issued_at=issued,
        expires_at=expires_at,
    )


@dataclass(frozen=True, slots=True)
class TokenVerifier:
    """What the token check needs, given to the app once (`create_service_app`)."""

    config: TokenConfig
    revocations: RevocationList | None = None

    def principal(self, token: str) -> Principal:
        return principal_from_token(self.config, token, self.revocations)


async def current_principal(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    """The authenticated caller; 401 with `WWW-Authenticate: Bearer` otherwise, 503 while
    this process cannot yet tell whether the token was revoked (`RevocationsIncomplete`)."""
    if not token:
        raise Unauthorized("Not authenticated")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = verifier.principal(token)
    revocations = verifier.revocations
    if revocations is not None and not revocations.complete:
        if not await revocations.wait_complete(REVOCATIONS_WAIT):
            raise RevocationsIncomplete()
        principal = verifier.principal(token)  # checked again, against the complete map
    return principal


async def claims_superuser(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """The caller, if their access token claims administrator rights; 403 otherwise.

    This trusts the token's claim, so a demotion counts once the token is revoked or expires.
    A service that owns the accounts checks its database instead (user-service's
    `current_admin`)."""
    if not principal.is_superuser:
        raise Forbidden("Administrator rights are required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
SuperuserClaimDep = Annotated[Principal, Depends(claims_superuser)]
