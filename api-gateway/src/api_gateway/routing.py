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
        # Every prefix is one segment under `/api/v1/`, so a request's route is one dictionary
        # lookup of its third segment (not a scan of the prefixes per request).
        self.routes: dict[str, ProxyRoute] = {}
        for prefix, upstream in ROUTES.items():
            segment = prefix[len(_COMMON) :]
            if not prefix.startswith(_COMMON) or not segment or "/" in segment:
                raise ValueError(f"{prefix}: a public prefix is one segment under {_COMMON}")
            self.routes[segment] = ProxyRoute(prefix, forwarders[upstream])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(_COMMON):
                route = self.routes.get(path[_SEGMENT:].partition("/")[0])
                if route is not None:
                    scope["route"] = route
                    await route.forward(scope, receive, send)
                    return
        await self.app(scope, receive, send)
