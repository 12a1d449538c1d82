"""Which upstream serves a path: the route table, and the dispatch that hands each public
prefix to its upstream's forwarder."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

# Public prefixes and the upstream behind each. `/internal/...` is deliberately absent.
ROUTES: dict[str, str] = {
    "/api/v1/auth": "user-service",
    "/api/v1/users": "user-service",
    "/api/v1/tasks": "task-service",
    "/api/v1/projects": "task-service",
    "/api/v1/stats": "stats-service",
}
_COMMON = "/api/v1/"  # what every prefix starts with: other paths are not looked up
_SEGMENT = len(_COMMON)


def _by_segment(routes: Mapping[str, str]) -> dict[str, str]:
    """Each public prefix by its one segment under `/api/v1/`: a path's prefix is then one
    dictionary lookup of its third segment, not a scan of the prefixes per request."""
    found: dict[str, str] = {}
    for prefix in routes:
        segment = prefix[_SEGMENT:]
        if not prefix.startswith(_COMMON) or not segment or "/" in segment:
            raise ValueError(f"{prefix}: a public prefix is one segment under {_COMMON}")
        found[segment] = prefix
    return found


_PREFIXES = _by_segment(ROUTES)


def match_prefix(path: str) -> str | None:
    """The public prefix a decoded request path falls under (whole segments: `/api/v1/tasksx`
    is not `/api/v1/tasks`), or None: not routed, 404."""
    if not path.startswith(_COMMON):
        return None
    return _PREFIXES.get(path[_SEGMENT:].partition("/")[0])


def upstream_for(path: str) -> str | None:
    """The upstream serving a decoded request path, or None (not routed: 404)."""
    prefix = match_prefix(path)
    return None if prefix is None else ROUTES[prefix]


class ProxyRoute:
    """One public prefix (with or without trailing slash, and everything below it) and the
    forwarder of its upstream. Put in the scope as `route`: its `path` is the metrics label
    (bounded: a prefix, never the raw path)."""

    __slots__ = ("forward", "path")

    def __init__(self, prefix: str, forward: ASGIApp) -> None:
        self.path = prefix
        self.forward = forward


class ProxyDispatch:
    """The innermost middleware of the gateway's app: an HTTP request under a public prefix
    goes straight to its forwarder; anything else (the gateway's own routes, WebSockets)
    continues to FastAPI's router.

    Installed inside the middlewares every answer needs (security headers, CORS, request id,
    trace context, access line, metrics, problem+json rendering), so a proxied request still
    gets all of them, but skips what only FastAPI routes need: Starlette's exception
    middleware, FastAPI's exit stack and the router's scan of every route."""

    def __init__(self, app: ASGIApp, *, forwarders: Mapping[str, ASGIApp]) -> None:
        self.app = app
        self.routes = {
            prefix: ProxyRoute(prefix, forwarders[upstream]) for prefix, upstream in ROUTES.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix = match_prefix(scope["path"])
            if prefix is not None:
                route = self.routes[prefix]
                scope["route"] = route
                await route.forward(scope, receive, send)
                return
        await self.app(scope, receive, send)
