"""Which upstream serves a path, and which raw paths are safe to forward at all.

The upstream URL is always the chosen replica's `scheme://host:port` followed by the client's
raw path, so the host can only ever come from configuration. Paths that an upstream might
interpret differently from the gateway (dot-segments, encoded slashes, backslashes) are
refused instead of normalised: the gateway never rewrites paths.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote_from_bytes

from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

# Public prefixes and the upstream behind each. `/internal/...` is deliberately absent.
ROUTES: dict[str, str] = {
    "/api/v1/auth": "user-service",
    "/api/v1/users": "user-service",
    "/api/v1/tasks": "task-service",
    "/api/v1/stats": "stats-service",
}

# Percent-escapes of "/", "\" and NUL: an upstream may decode them into path structure.
_AMBIGUOUS_ESCAPE = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)
# Controls, space, DEL, "#", "?" and non-ASCII bytes: never part of a raw origin-form path.
_NOT_PATH_BYTE = re.compile(rb"[\x00-\x20\x7f-\xff#?]")
# A "." or ".." segment, its dots possibly percent-encoded (%2e).
_DOT_SEGMENT = re.compile(r"/(?:\.|%2e){1,2}(?=/|$)", re.IGNORECASE)
_UNSAFE_QUERY_BYTE = re.compile(rb"[\x00-\x20\x7f#]")
_QUERY_SAFE = "!$&'()*+,-./:;=?@_~%[]"


class UnsafePathError(ValueError):
    """The path could mean something else to the upstream than to the gateway."""


def match_prefix(path: str) -> str | None:
    """The public prefix a decoded request path falls under (whole segments: `/api/v1/tasksx`
    is not `/api/v1/tasks`), or None: not routed, 404."""
    for prefix in ROUTES:
        if _under(path, prefix):
            return prefix
    return None


def upstream_for(path: str) -> str | None:
    """The upstream serving a decoded request path, or None (not routed: 404)."""
    prefix = match_prefix(path)
    return None if prefix is None else ROUTES[prefix]


def _under(path: str, prefix: str) -> bool:
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


class ProxyRoute(BaseRoute):
    """A route of the gateway's router: one public prefix (with or without trailing slash, and
    everything below it), handed to the forwarder for that prefix's upstream. HTTP only: a
    WebSocket or another scope type never matches."""

    def __init__(self, prefix: str, upstream: str) -> None:
        self.path = prefix  # also the bounded metrics label
        self.upstream = upstream
        self.name = f"proxy:{prefix}"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and _under(scope["path"], self.path):
            return Match.FULL, {"route": self}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = scope["app"].state.gateway
        await gateway.forwarder(gateway.upstreams[self.upstream], scope, receive, send)


def proxy_routes() -> list[ProxyRoute]:
    return [ProxyRoute(prefix, upstream) for prefix, upstream in ROUTES.items()]


def check_raw_path(raw_path: bytes) -> str:
    """The raw path as text if it is safe to append to an upstream base URL.

    Raises UnsafePathError for anything that is not an origin-form path, contains a
    backslash, an encoded slash/backslash/NUL, an empty leading segment (`//host`),
    or a `.`/`..` segment (also when percent-encoded).
    """
    if not raw_path.startswith(b"/") or raw_path.startswith(b"//"):
        raise UnsafePathError("the path must be an absolute path")
    if b"\\" in raw_path or _AMBIGUOUS_ESCAPE.search(raw_path):
        raise UnsafePathError("the path contains an encoded or backward slash")
    if _NOT_PATH_BYTE.search(raw_path):
        raise UnsafePathError("the path contains bytes that must be percent-encoded")
    text = raw_path.decode("ascii")
    if _DOT_SEGMENT.search(text):
        raise UnsafePathError("the path contains a dot-segment")
    return text


def request_target(raw_path: str, query_string: bytes) -> str:
    """The origin-form request target sent upstream: a path accepted by `check_raw_path`, and
    the query as received (bytes that cannot appear in a request line percent-encoded)."""
    if not query_string:
        return raw_path
    if query_string.isascii() and not _UNSAFE_QUERY_BYTE.search(query_string):
        return f"{raw_path}?{query_string.decode('ascii')}"
    return f"{raw_path}?{quote_from_bytes(query_string, safe=_QUERY_SAFE)}"
