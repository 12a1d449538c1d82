"""Which upstream serves a path: the route table, and the router entries that hand each public
prefix to its upstream's forwarder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import ASGIApp, Receive, Scope, Send

# Public prefixes and the upstream behind each. `/internal/...` is deliberately absent.
ROUTES: dict[str, str] = {
    "/api/v1/auth": "user-service",
    "/api/v1/users": "user-service",
    "/api/v1/tasks": "task-service",
    "/api/v1/projects": "task-service",
    "/api/v1/stats": "stats-service",
}


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
    everything below it), handed to the forwarder of that prefix's upstream. HTTP only: a
    WebSocket or another scope type never matches."""

    def __init__(self, prefix: str, forward: ASGIApp) -> None:
        self.path = prefix  # also the bounded metrics label
        self.forward = forward
        self.name = f"proxy:{prefix}"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and _under(scope["path"], self.path):
            return Match.FULL, {"route": self}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.forward(scope, receive, send)


def proxy_routes(forwarders: Mapping[str, ASGIApp]) -> list[ProxyRoute]:
    """One route per public prefix, to the forwarder of its upstream (`forwarders` by name)."""
    return [ProxyRoute(prefix, forwarders[upstream]) for prefix, upstream in ROUTES.items()]
