"""The web app's cookie session: the refresh token in an HttpOnly cookie, and the checks that
keep other sites from using it (CSRF).

- The cookie is `HttpOnly` (page scripts, hence injected ones, cannot read it),
  `SameSite=Strict` (no other site's page or link makes the browser send it), `Secure` when the
  deployment says browsers reach it over TLS, and scoped to `/api/v1/auth`: it travels only to
  the auth routes, never with task or stats requests.
- The cookie routes also require the `X-Requested-With` header, which a cross-origin page can
  only send after a CORS preflight the gateway does not grant to strangers, and refuse a
  request whose `Origin` is neither this host nor a configured origin. SameSite alone would
  leave sibling subdomains (same site, other origin) able to post.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from fastapi import Request, Response
from taskflow_kit.errors import Forbidden

SESSION_COOKIE = "taskflow_session"
COOKIE_PATH = "/api/v1/auth"
CSRF_HEADER = "X-Requested-With"


class CrossSiteRequestRefused(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            f"Cookie sessions need the {CSRF_HEADER} header and a request from this site"
        )


def check_same_origin(request: Request, *, allowed_origins: list[str]) -> None:
    """403 unless the request carries the custom header and, when the browser names its
    origin, that origin is this host (as the client addressed it) or an allowed one."""
    if not request.headers.get(CSRF_HEADER):
        raise CrossSiteRequestRefused()
    origin = request.headers.get("origin")
    if origin is None or origin in allowed_origins:
        return
    host = request.headers.get("host", "").lower()
    if not host or urlsplit(origin).netloc.lower() != host:
        raise CrossSiteRequestRefused()


def set_session_cookie(
    response: Response, refresh_token: str, *, expires_at: datetime, secure: bool
) -> None:
    max_age = max(0, int((expires_at - datetime.now(UTC)).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE,
        refresh_token,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def cleared_session_cookie(*, secure: bool) -> str:
    """The `Set-Cookie` value that removes the session cookie (for error answers too)."""
    response = Response()
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict"
    )
    return response.headers["set-cookie"]
