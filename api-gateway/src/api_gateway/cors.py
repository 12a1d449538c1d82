"""CORS: Starlette's middleware, with a fast path for requests that carry no Origin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class GatewayCORS:
    """Requests with an `Origin` (browsers: preflights and cross-origin calls) go through
    Starlette's `CORSMiddleware`. Others (scripts, services, load tests: most of the traffic)
    only get `Vary: Origin` added, as that middleware would, without parsing every header of
    request and response into dictionaries on the hot path."""

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _has_origin(scope["headers"]):
            await self.cors(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = add_vary_origin(message.get("headers", []))
            await send(message)

        await self.app(scope, receive, send_with_vary)


def _has_origin(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name == b"origin" for name, _ in headers)


def add_vary_origin(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with `Origin` added to `Vary` (one merged Vary header, as Starlette does)."""
    out = list(headers)
    varies = [value for name, value in out if name.lower() == b"vary"]
    if not varies:
        out.append((b"vary", b"Origin"))
        return out
    kept = [(name, value) for name, value in out if name.lower() != b"vary"]
    kept.append((b"vary", b", ".join([*varies, b"Origin"])))
    return kept
