"""Small real upstreams for the gateway's tests: a controllable Starlette backend served by
uvicorn on a free loopback port (in this event loop), and a server that drops connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

# A valid, empty OpenAPI document: served, it keeps the gateway's docs refresh quiet (a missing
# one is fetched again every few tenths of a second, and each fetch takes a round-robin turn).
EMPTY_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "x", "version": "1"},
    "paths": {},
}
EMPTY_OPENAPI_BYTES = json.dumps(EMPTY_OPENAPI).encode()


@dataclass
class Backend:
    """A stand-in service. Every request is recorded; behaviour is switched per test."""

    name: str
    health_status: int = 200
    status: int = 200
    delay: float = 0.0
    openapi: dict[str, Any] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hits(self) -> int:
        return len(self.requests)

    def app(self) -> Starlette:
        async def health(request: Request) -> Response:
            return JSONResponse({"status": "ok"}, status_code=self.health_status)

        async def openapi(request: Request) -> Response:
            if self.openapi is None:
                return JSONResponse({"detail": "none"}, status_code=404)
            return JSONResponse(self.openapi)

        async def stream(request: Request) -> Response:
            size = int(request.query_params.get("bytes", "1048576"))

            async def chunks() -> AsyncIterator[bytes]:
                sent = 0
                while sent < size:
                    piece = min(65536, size - sent)
                    yield b"x" * piece
                    sent += piece

            return StreamingResponse(chunks(), media_type="application/octet-stream")

        async def echo(request: Request) -> Response:
            body = await request.body()
            record = {
                "backend": self.name,
                "method": request.method,
                "path": request.url.path,
                "raw_path": request.scope["raw_path"].decode(),
                "query": request.scope["query_string"].decode(),
                "headers": [(k.decode(), v.decode()) for k, v in request.scope["headers"]],
                "body_length": len(body),
                "body_sha": __import__("hashlib").sha256(body).hexdigest(),
            }
            self.requests.append(record)
            if self.delay:
                await asyncio.sleep(self.delay)
            headers = {
                "Set-Cookie": "session=from-upstream; Path=/",
                "Connection": "x-upstream-private",
                "X-Upstream-Private": "hop",
                "Keep-Alive": "timeout=5",
                "ETag": '"v1"',
            }
            return JSONResponse(record, status_code=self.status, headers=headers)

        async def crash(request: Request) -> Response:
            # Starlette answers 500 and re-raises; uvicorn then closes the kept-alive connection.
            raise RuntimeError("a bug in the service")

        return Starlette(
            routes=[
                Route("/health", health),
                Route("/openapi.json", openapi),
                Route("/api/v1/tasks/stream", stream),
                Route("/api/v1/tasks/crash", crash, methods=["GET", "POST"]),
                Route(
                    "/{path:path}", echo, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
                ),
            ]
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningServer:
    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def start_server(app: ASGIApp, *, port: int = 0, lifespan: str = "off") -> RunningServer:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        access_log=False,
        proxy_headers=False,  # the gateway is the edge: X-Forwarded-For from clients is data
    )
    server = uvicorn.Server(config)
    # Several servers share this loop and thread: none may take over the process's signals.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    return RunningServer(server, task)


@asynccontextmanager
async def serve(app: ASGIApp, *, lifespan: str = "off") -> AsyncIterator[RunningServer]:
    running = await start_server(app, lifespan=lifespan)
    try:
        yield running
    finally:
        await running.stop()


@asynccontextmanager
async def dropping_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """Answers health probes, but closes the connection on any other request without
    answering (as a crashing process would)."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            received.append(head)
            if head.startswith(b"GET /health "):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
            elif head.startswith(b"GET /openapi.json "):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(EMPTY_OPENAPI_BYTES), EMPTY_OPENAPI_BYTES)
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def failing_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """Answers `/boom` with a kept-alive 500 and then drops the next request sent on that
    connection unanswered (a server closing after a failure, as the request arrives); anything
    else is answered 201."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received.append(head)
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                if b" /api/v1/tasks/boom " in head:
                    writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    received.append(await reader.readuntil(b"\r\n\r\n"))
                    break
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.close()
        await server.wait_closed()


async def raw_request(url: str, request: bytes, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send bytes exactly as given (path tricks no client library would send)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), timeout)
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data
