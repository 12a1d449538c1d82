"""The kit's error boundary on a real uvicorn server: every problem body carries the request id,
an unexpected error is logged once and answered 500 on a connection that stays open."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs
from taskflow_kit.app import create_service_app
from taskflow_kit.errors import Conflict, ProblemMiddleware
from taskflow_kit.logs import RequestContextMiddleware
from taskflow_kit.tokens import TokenConfig


def build_app(token_config: TokenConfig) -> FastAPI:
    app = create_service_app(
        service="kit-boundary",
        title="kit boundary",
        version="0",
        description="",
        token_config=token_config,
    )

    @app.get("/port")
    async def port(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.get("/conflict")
    async def conflict() -> None:
        raise Conflict("taken")

    @app.get("/db-down")
    async def db_down() -> None:
        raise ConnectionRefusedError("database refused")

    return app


@pytest.fixture
async def server_url(token_config: TokenConfig) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(build_app(token_config), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task
    sock.close()


async def test_connection_survives_a_500(server_url: str) -> None:
    async with httpx.AsyncClient(
        base_url=server_url, limits=httpx.Limits(max_connections=1)
    ) as client:
        before = (await client.get("/port")).json()["port"]
        with capture_logs() as logs:
            failed = await client.get("/boom")
        after = (await client.get("/port")).json()["port"]
    assert failed.status_code == 500
    assert "secret internals" not in failed.text
    assert failed.headers["content-type"] == "application/problem+json"
    # The same client port: the server kept the keep-alive connection open after the 500.
    assert after == before
    assert [entry["event"] for entry in logs].count("unhandled_error") == 1


@pytest.mark.parametrize(
    ("path", "status"), [("/boom", 500), ("/db-down", 503), ("/conflict", 409), ("/nope", 404)]
)
async def test_every_problem_body_carries_the_request_id(
    server_url: str, path: str, status: int
) -> None:
    async with httpx.AsyncClient(base_url=server_url) as client:
        response = await client.get(path, headers={"X-Request-ID": "trace-42"})
    assert response.status_code == status
    assert response.headers["x-request-id"] == "trace-42"
    assert response.json()["request_id"] == "trace-42"
    if status == 503:
        assert response.headers["retry-after"] == "5"


async def test_boundary_alone_renders_raw_asgi_errors() -> None:
    """The gateway's raw-ASGI path uses the same boundary around a plain ASGI callable."""

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/conflict":
            raise Conflict("raw conflict")
        raise ValueError("raw internals")

    app = RequestContextMiddleware(ProblemMiddleware(raw), access_log=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        conflict = await client.get("/conflict")
        boom = await client.get("/boom")
    assert conflict.status_code == 409
    assert conflict.json()["detail"] == "raw conflict"
    assert boom.status_code == 500
    assert boom.json()["request_id"] == boom.headers["x-request-id"]
    assert "raw internals" not in boom.text


async def test_error_after_the_answer_started_is_logged_not_rendered() -> None:
    async def half(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-body")

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with capture_logs() as logs:
        await ProblemMiddleware(half)(scope, receive, send)  # type: ignore[arg-type]
    assert [message["type"] for message in sent] == ["http.response.start"]
    assert [entry["event"] for entry in logs] == ["unhandled_error"]


async def test_database_starting_up_is_503_not_500() -> None:
    """A server still recovering answers SQLSTATE 57P03, which SQLAlchemy wraps as a bare
    DBAPIError (seen in the reliability suite's database restart)."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    async def starting(scope: Scope, receive: Receive, send: Send) -> None:
        cause = asyncpg.exceptions.CannotConnectNowError("not yet accepting connections")
        raise DBAPIError("connect", None, cause)

    transport = httpx.ASGITransport(app=ProblemMiddleware(starting))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/tasks/")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    "error",
    [
        "ForeignKeyViolationError",  # what the request refers to was deleted meanwhile
        "UniqueViolationError",  # what it creates was created first
    ],
)
async def test_an_integrity_race_no_service_answered_is_409_not_500(error: str) -> None:
    import asyncpg

    async def racing(scope: Scope, receive: Receive, send: Send) -> None:
        raise getattr(asyncpg, error)("violates a constraint")

    transport = httpx.ASGITransport(app=ProblemMiddleware(racing))
    with capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/tasks/")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert [entry["event"] for entry in logs] == ["integrity_conflict"]


def test_one_reader_of_database_errors_follows_the_cause_chain() -> None:
    """SQLSTATE and constraint are found however the driver's error is wrapped (SQLAlchemy's
    `orig`, or `raise ... from`), and a cycle in the chain ends the walk."""
    from taskflow_kit.dberrors import constraint_name, is_unavailable_database, sqlstate

    class DriverError(Exception):
        def __init__(self, state: str, constraint: str | None = None) -> None:
            super().__init__(state)
            self.sqlstate = state
            self.constraint_name = constraint

    class Wrapped(Exception):
        def __init__(self, orig: BaseException) -> None:
            super().__init__("wrapped")
            self.orig = orig

    unique = Wrapped(Exception("adapted"))
    unique.orig.__cause__ = DriverError("23505", "ix_user_email")
    assert sqlstate(unique) == "23505"
    assert constraint_name(unique) == "ix_user_email"
    assert not is_unavailable_database(unique)

    starting = Wrapped(DriverError("57P03"))
    assert is_unavailable_database(starting)
    ended_while_idle = DriverError("25P03")  # idle_in_transaction_session_timeout
    assert is_unavailable_database(ended_while_idle)

    looping = Exception("a")
    looping.__cause__ = Exception("b")
    looping.__cause__.__cause__ = looping
    assert sqlstate(looping) is None
    assert not is_unavailable_database(looping)
