"""Helpers for the kit's event tests: throwaway databases with an outbox, throwaway Redis
servers to stop and restart, polling with a deadline, and the worker subprocesses to SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from alembic.migration import MigrationContext
from alembic.operations import Operations
from event_tables import APPLIED, METADATA, PROCESSED
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import Connection, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from taskflow_kit.app import create_service_app
from taskflow_kit.auth import PrincipalDep
from taskflow_kit.consumer import DuplicateEvent
from taskflow_kit.db import create_engine
from taskflow_kit.events import EVENT_FIELD, Event
from taskflow_kit.migrations import drop_database, ensure_database
from taskflow_kit.outbox import create_outbox_v1
from taskflow_kit.processed import claim_event
from taskflow_kit.revocation import RevocationList
from taskflow_kit.testing import empty_tables, test_database_server_url, unique_name
from taskflow_kit.tokens import TokenConfig, issue_token

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
WORKER = Path(__file__).resolve().parent / "event_worker.py"


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float, what: str, every: float = 0.01
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _create_tables(connection: Connection) -> None:
    create_outbox_v1(Operations(MigrationContext.configure(connection)))
    METADATA.create_all(connection, tables=[PROCESSED, APPLIED])


@contextlib.asynccontextmanager
async def outbox_database(prefix: str = "tf_kit_events") -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A new database holding the outbox (via `create_outbox_v1`, the migration services run),
    `processed_event` and `applied`; dropped afterwards. Yields (url, engine)."""
    url = (
        make_url(test_database_server_url())
        .set(database=unique_name(prefix))
        .render_as_string(hide_password=False)
    )
    await ensure_database(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_create_tables)
        yield url, engine
    finally:
        await engine.dispose()
        await drop_database(url)


async def reset_tables(engine: AsyncEngine) -> None:
    await empty_tables(engine, METADATA)


async def delete_keys(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)


async def stream_events(client: Redis, key: str) -> list[Event]:
    entries: Any = await client.xrange(key)
    return [Event.from_json(fields[EVENT_FIELD]) for _, fields in entries]


def per_subject(events: Sequence[Event]) -> dict[str, list[int]]:
    """Subject → the `seq` numbers of its events, in the order given."""
    order: dict[str, list[int]] = {}
    for event in events:
        order.setdefault(event.subject_id, []).append(int(event.data["seq"]))
    return order


@dataclass
class ThrowawayRedis:
    """A redis-server of our own on a free port (never the shared one), append-only with an
    fsync per write, so a stop (SIGKILL) and restart keeps every entry it acknowledged."""

    executable: str = field(default_factory=lambda: shutil.which("redis-server") or "")
    port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tf-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start")
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Worker:
    """`event_worker.py` in a subprocess (a relay or a consumer), to SIGKILL for real."""

    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="tf-worker-")[1]))

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), *self.args],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def remove(self) -> None:
        self.kill()
        self.log.unlink(missing_ok=True)


def worker_args(mode: str, **options: str) -> list[str]:
    return [mode, json.dumps(options)]


@dataclass
class ApplyingHandler:
    """A database-backed consumer's handler: the effect (a row in `applied`) and the event id
    (`claim_event`) in one transaction, so a redelivered event is a `DuplicateEvent`."""

    engine: AsyncEngine
    group: str
    calls: list[str] = field(default_factory=list)
    duplicates: int = 0

    async def __call__(self, event: Event) -> None:
        self.calls.append(event.id)
        async with AsyncSession(self.engine) as session, session.begin():
            if not await claim_event(session, PROCESSED, self.group, event):
                self.duplicates += 1
                raise DuplicateEvent(event.id)
            await session.execute(
                insert(APPLIED).values(
                    event_id=event.id, subject_id=event.subject_id, seq=int(event.data["seq"])
                )
            )


async def applied_rows(engine: AsyncEngine) -> list[tuple[str, str, int]]:
    """(event id, subject, seq) of every applied effect, in the order they were applied."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(APPLIED.c.event_id, APPLIED.c.subject_id, APPLIED.c.seq).order_by(APPLIED.c.id)
        )
        return [(str(row.event_id), row.subject_id, row.seq) for row in rows]


def applied_order(rows: Sequence[tuple[str, str, int]]) -> dict[str, list[int]]:
    order: dict[str, list[int]] = {}
    for _, subject, seq in rows:
        order.setdefault(subject, []).append(seq)
    return order


def access_token(
    config: TokenConfig, user_id: int, *, sid: str, now: dt.datetime | None = None
) -> str:
    """An access token of `user_id` in session `sid` (issued two seconds ago by default)."""
    return issue_token(
        config,
        subject=str(user_id),
        token_type="access",
        ttl=dt.timedelta(minutes=5),
        claims={"sid": sid, "username": f"user{user_id}"},
        now=now or dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2),
    )


def replica_app(token_config: TokenConfig, revocations: RevocationList) -> FastAPI:
    """A service replica's token check over `revocations`: `GET /me` answers the caller's id."""
    app = create_service_app(
        service="replica",
        title="replica",
        version="0",
        description="",
        token_config=token_config,
        revocations=revocations,
    )

    @app.get("/me")
    async def me(principal: PrincipalDep) -> dict[str, int]:
        return {"id": principal.id}

    return app
