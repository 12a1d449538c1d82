"""Early rejection of bad bearer tokens, before any service is contacted.

Services still validate every token themselves (defence in depth); the gateway only spares
them requests that cannot succeed, and learns the user id for per-user rate limits. A revoked
token (deactivated, deleted, demoted, logged out) is refused here too, from the in-memory
revocation list: no call per request.
"""

from __future__ import annotations

import time

from taskflow_kit.auth import Principal, TokenVerifier
from taskflow_kit.errors import Unauthorized
from taskflow_kit.revocation import RevocationList
from taskflow_kit.tokens import TokenConfig

_CACHE_SIZE = 10_000


class TokenGate:
    """Verifies access tokens, remembering recent good ones until they expire (a token's
    signature is verified once, not on every request; revocation is checked every time)."""

    def __init__(self, config: TokenConfig, revocations: RevocationList | None = None) -> None:
        self.config = config
        self.verifier = TokenVerifier(config, revocations)
        self._valid: dict[str, Principal] = {}

    def principal(self, authorization: bytes | None) -> Principal | None:
        """The caller of a valid bearer token; None without one (the service decides);
        Unauthorized for a malformed, forged, expired, revoked or non-access token."""
        token = _bearer(authorization)
        if token is None:
            return None
        cached = self._valid.get(token)
        if cached is not None and cached.expires_at > time.time():
            revocations = self.verifier.revocations
            if revocations is not None and revocations.is_revoked(
                cached.id, cached.issued_at, cached.session_id
            ):
                del self._valid[token]
                raise Unauthorized("The token has been revoked; sign in again")
            return cached
        verified = self.verifier.principal(token)
        if len(self._valid) >= _CACHE_SIZE:
            self._valid.clear()
        self._valid[token] = verified
        return verified

    def subject(self, authorization: bytes | None) -> str | None:
        """The user id of a valid bearer token (see `principal`)."""
        principal = self.principal(authorization)
        return None if principal is None else str(principal.id)

    def is_admin(self, authorization: bytes | None) -> bool:
        """Whether this is a valid access token (every check of `principal` applies) whose
        `is_superuser` claim is true."""
        principal = self.principal(authorization)
        return principal is not None and principal.is_superuser


def _bearer(authorization: bytes | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()
