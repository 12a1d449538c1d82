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
from taskflow_kit.logs import REQUEST_ID_HEADER

_NOSNIFF = (b"x-content-type-options", b"nosniff")
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()


class SecurityHeaders:
    """The headers every answer leaves the gateway with: its own security headers last (an
    answer's own copies dropped: the web assets set nosniff themselves), and `Origin` merged
    into `Vary` (one Vary header, as Starlette's CORS middleware writes it) where CORS is not
    applied. One pass over the answer's headers; shared by both ways an answer leaves
    (`EdgeHeaders`, and api_gateway.routing.ProxyEdge for proxied requests)."""

    def __init__(self, hsts_seconds: int = 0) -> None:
        self.extra = [_NOSNIFF]
        if hsts_seconds > 0:
            value = f"max-age={hsts_seconds}; includeSubDomains".encode()
            self.extra.append((b"strict-transport-security", value))
        self.names = frozenset(name for name, _ in self.extra)
        self._names_and_request_id = self.names | {_REQUEST_ID}

    def apply(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        vary: bool,
        request_id: tuple[bytes, bytes] | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """`request_id`, an `X-Request-ID` header, when given replaces the answer's own in the
        same pass (as the kit's request middleware does for answers that go through the
        stack)."""
        names = self.names if request_id is None else self._names_and_request_id
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
        if request_id is not None:
            out.append(request_id)
        if vary:
            varies.append(b"Origin")
            out.append((b"vary", b", ".join(varies)))
        out.extend(self.extra)
        return out


class EdgeHeaders:
    """The outermost middleware of the gateway's own routes: the security headers on every HTTP
    answer, and CORS.

    Requests with an `Origin` (browsers: preflights and cross-origin calls) go through
    Starlette's `CORSMiddleware` (built from `cors_options`), its answers, preflights included,
    getting the security headers too. Others (scripts, services, load tests: most of the
    traffic) only get `Vary: Origin` added, as that middleware would, without parsing every
    header of request and response into dictionaries on the hot path; the two edits are one
    pass over the answer's headers (`SecurityHeaders`)."""

    def __init__(
        self, app: ASGIApp, /, *, security: SecurityHeaders | None = None, **cors_options: Any
    ) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, **cors_options)
        self.security = security or SecurityHeaders()

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
        self, headers: Iterable[tuple[bytes, bytes]], *, vary: bool
    ) -> list[tuple[bytes, bytes]]:
        """The answer's headers as they leave the gateway (`SecurityHeaders.apply`)."""
        return self.security.apply(headers, vary=vary)


def has_origin(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name == b"origin" for name, _ in headers)
