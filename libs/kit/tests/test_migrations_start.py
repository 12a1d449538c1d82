"""Start-up against a database that is not there yet: bounded, logged retries, then migrate."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import structlog
from sqlalchemy.exc import OperationalError
from taskflow_kit.migrations import database_unavailable, prepare_database

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ENV_PY = """
from alembic import context
from sqlalchemy import MetaData
from taskflow_kit.migrations import run_env

run_env(context, MetaData(), default_url="")
"""
VERSION_PY = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table("start_probe", sa.Column("id", sa.Integer, primary_key=True))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def alembic_ini(tmp_path: Path) -> Path:
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text(ENV_PY)
    (tmp_path / "migrations" / "versions" / "0001_probe.py").write_text(VERSION_PY)
    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\n")
    return ini


class ThrowawayPostgres:
    """A PostgreSQL 15 cluster of this test's own on a free port (never the shared one)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, tool: str, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*self.as_postgres, str(PG_BIN / tool), *args], check=check, capture_output=True
        )

    def init(self) -> None:
        if self.as_postgres:
            shutil.chown(self.data_dir, "postgres", "postgres")
        self.run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir}"
        log = str(self.data_dir / "server.log")
        self.run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/start_probe"


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 binaries not installed")
    # Not under pytest's tmp_path: the postgres account must be able to reach the directory.
    server = ThrowawayPostgres(Path(tempfile.mkdtemp(prefix="taskflow-start-pg-")))
    try:
        server.init()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


async def test_a_database_that_starts_late_is_waited_for_then_migrated(
    postgres: ThrowawayPostgres, alembic_ini: Path
) -> None:
    with structlog.testing.capture_logs() as logs:
        start = asyncio.create_task(
            prepare_database(alembic_ini, postgres.url, wait_seconds=60, first_delay=0.2)
        )
        deadline = time.monotonic() + 10
        while not any(entry["log_level"] == "warning" for entry in logs):
            assert time.monotonic() < deadline, "no retry was logged"
            assert not start.done(), "gave up on a database that is only starting"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(postgres.start)
        await asyncio.wait_for(start, timeout=30)

    retries = [entry for entry in logs if entry["log_level"] == "warning"]
    assert retries[0]["attempt"] == 1
    assert "ConnectionRefusedError" in retries[0]["error"] or "OSError" in retries[0]["error"]
    connection = await asyncpg.connect(postgres.url)
    try:
        assert await connection.fetchval("SELECT to_regclass('start_probe') IS NOT NULL")
        assert await connection.fetchval("SELECT version_num FROM alembic_version") == "0001"
    finally:
        await connection.close()


async def test_waiting_is_bounded(alembic_ini: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens"
    started = time.monotonic()
    with pytest.raises(OSError):
        await prepare_database(alembic_ini, url, wait_seconds=1.0, first_delay=0.1, max_delay=0.3)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5.0


async def test_a_fault_that_waiting_cannot_cure_is_raised_at_once(alembic_ini: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="names no database"):
        await prepare_database(alembic_ini, "postgresql://postgres@127.0.0.1:5432", wait_seconds=30)
    assert time.monotonic() - started < 2.0


def test_unavailable_is_recognised_through_sqlalchemy_wrapping() -> None:
    refused = ConnectionRefusedError(111, "Connect call failed")
    wrapped = OperationalError("SELECT 1", {}, refused)
    assert database_unavailable(wrapped)
    assert database_unavailable(asyncpg.CannotConnectNowError("the database system is starting up"))
    chained = RuntimeError("alembic failed")
    chained.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert database_unavailable(chained)
    assert not database_unavailable(asyncpg.InvalidPasswordError("password authentication failed"))
    assert not database_unavailable(ValueError("the database URL names no database"))
