"""Headers every gateway response carries, whoever produced it (a service, the gateway's own
routes, an error): `X-Content-Type-Options: nosniff`, and HSTS when the deployment serves
browsers over HTTPS (`GATEWAY_HSTS_SECONDS`). docs/security.md, "Gateway"."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_NOSNIFF = (b"x-content-type-options", b"nosniff")


class SecurityHeaders:
    def __init__(self, app: ASGIApp, /, *, hsts_seconds: int = 0) -> None:
        self.app = app
        self.extra = [_NOSNIFF]
        if hsts_seconds > 0:
            value = f"max-age={hsts_seconds}; includeSubDomains".encode()
            self.extra.append((b"strict-transport-security", value))
        self.names = {name for name, _ in self.extra}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in self.names  # the web assets set nosniff themselves
                ]
                message["headers"] = headers + self.extra
            await send(message)

        await self.app(scope, receive, send_with_headers)
