"""Headers every gateway response carries, whoever produced it (a service, the gateway's own
routes, an error): `X-Content-Type-Options: nosniff`, and HSTS when the deployment serves
browsers over HTTPS (`GATEWAY_HSTS_SECONDS`). docs/security.md, "Gateway".

The same ASGI layer applies CORS: a layer per concern cost a send wrapper, a closure and a
copy of the header list per answer each (issue 17).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_NOSNIFF = (b"x-content-type-options", b"nosniff")


class EdgeHeaders:
    """The outermost gateway middleware: the security headers on every HTTP answer, and CORS.

    Requests with an `Origin` (browsers: preflights and cross-origin calls) go through
    Starlette's `CORSMiddleware` (built from `cors_options`), its answers, preflights included,
    getting the security headers too. Others (scripts, services, load tests: most of the
    traffic) only get `Vary: Origin` added, as that middleware would, without parsing every
    header of request and response into dictionaries on the hot path; the two edits are one
    pass over the answer's headers."""

    def __init__(self, app: ASGIApp, /, *, hsts_seconds: int = 0, **cors_options: Any) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, **cors_options)
        self.extra = [_NOSNIFF]
        if hsts_seconds > 0:
            value = f"max-age={hsts_seconds}; includeSubDomains".encode()
            self.extra.append((b"strict-transport-security", value))
        self.names = frozenset(name for name, _ in self.extra)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cross_origin = has_origin(scope["headers"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self.headers(message.get("headers", ()), vary=not cross_origin)
            await send(message)

        if cross_origin:
            await self.cors(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)

    def headers(
        self, headers: list[tuple[bytes, bytes]] | tuple[()], *, vary: bool
    ) -> list[tuple[bytes, bytes]]:
        """The answer's headers without its own security headers (the web assets set nosniff
        themselves), with `Origin` merged into `Vary` (one Vary header, as Starlette's CORS
        middleware writes it) when `vary`, and the gateway's security headers last."""
        names = self.names
        out: list[tuple[bytes, bytes]] = []
        varies: list[bytes] = []
        for pair in headers:
            lower = pair[0].lower()
            if lower in names:
                continue
            if vary and lower == b"vary":
                varies.append(pair[1])
                continue
            out.append(pair)
        if vary:
            varies.append(b"Origin")
            out.append((b"vary", b", ".join(varies)))
        out.extend(self.extra)
        return out


def has_origin(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name == b"origin" for name, _ in headers)
