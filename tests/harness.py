"""Whole-suite harness: every TaskFlow service as a real uvicorn process on loopback.

`Suite.start()` creates fresh PostgreSQL databases (the services migrate them at start), picks
free ports, starts user-service, two task-service replicas, stats-service and the gateway, waits
for each `/health`, and `Suite.close()` stops everything and drops the databases. Each process
writes its output to a log file; a process that fails to start is reported with its log tail.

Used by `tests/conftest.py`; the tests drive everything through the gateway's URL.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from taskflow_devstack.processes import uvicorn_command

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 40.0  # seconds for one process to answer /health (2 busy cores, migrations)
STOP_TIMEOUT = 10.0

SERVICE_PACKAGES = {
    "user-service": "user_service",
    "task-service": "task_service",
    "stats-service": "stats_service",
    "api-gateway": "api_gateway",
}


def package_available(package: str) -> bool:
    """Whether `<package>.main` is importable (the service has landed in the workspace)."""
    try:
        return importlib.util.find_spec(f"{package}.main") is not None
    except ModuleNotFoundError:
        return False


def free_port(taken: set[int] | None = None) -> int:
    """A currently free loopback port, picked by the kernel (bind to port 0)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if 8000 <= port <= 8003 or (taken is not None and port in taken):
            continue
        if taken is not None:
            taken.add(port)
        return port


T = TypeVar("T")


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion in a fresh thread with its own event loop.

    Keeps the harness independent of the loop pytest-asyncio runs for the other suites.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the process (thread) that started it dies, so a
    killed test run never leaves services behind."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class StartupError(RuntimeError):
    """A service process exited or did not answer `/health` in time."""


@dataclass
class ServiceProcess:
    """One uvicorn process of one service, with its own port, environment and log file."""

    name: str
    package: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def directory(self) -> Path:
        """The service's own folder (where its Dockerfile runs it), else the repository root."""
        for folder, package in SERVICE_PACKAGES.items():
            if package == self.package and (ROOT / folder).is_dir():
                return ROOT / folder
        return ROOT

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return uvicorn_command(
            f"{self.package}.main:create_app", factory=True, host=LOOPBACK, port=self.port
        )

    def start(self) -> None:
        """Spawn the process (not waiting for it); output is appended to the log file."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals to pytest's terminal never reach it
                # The death signal follows the starting *thread*: only set it from the main one.
                preexec_fn=_die_with_parent
                if threading.current_thread() is threading.main_thread() and sys.platform == "linux"
                else None,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll `/health` until it answers 200; fail early (with the log tail) if it exits."""
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    code = None if self.process is None else self.process.returncode
                    raise StartupError(
                        f"{self.name} exited with {code} during start\n{self.log_tail()}"
                    )
                try:
                    response = client.get(f"{self.url}/health")
                    if response.status_code == 200:
                        return
                    last_error = f"/health answered {response.status_code}"
                except httpx.HTTPError as exc:
                    last_error = type(exc).__name__
                time.sleep(0.1)
        raise StartupError(
            f"{self.name} did not answer /health within {timeout:.0f}s ({last_error})\n"
            f"{self.log_tail()}"
        )

    def signal(self, signum: int) -> None:
        assert self.process is not None, f"{self.name} was never started"
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signum)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets (connections are accepted) but never answers."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, then reap it: no graceful shutdown, in-flight requests are cut."""
        if self.process is None:
            return
        self.signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), SIGKILL when it does not exit in time. Idempotent."""
        if not self.running:
            return
        assert self.process is not None
        self.signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self.stop()
        self.start()
        self.wait_ready(timeout)

    def ensure_running(self, timeout: float = START_TIMEOUT) -> None:
        """Undo a pause or a kill (used by the failure tests to restore the suite)."""
        if self.running:
            self.resume()
        else:
            self.start()
        self.wait_ready(timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)


def _terminate_gracefully() -> None:
    """Turn SIGTERM into SystemExit (when nobody else handles it), so that teardown and atexit
    still stop the services when a CI job or a developer terminates the test run."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def exit_now(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)


def start_and_wait(processes: Iterable[ServiceProcess], timeout: float = START_TIMEOUT) -> None:
    """Start several processes at once and wait until every one is ready."""
    processes = list(processes)
    for process in processes:
        process.start()
    errors: list[str] = []
    for process in processes:
        try:
            process.wait_ready(timeout)
        except StartupError as exc:
            errors.append(str(exc))
    if errors:
        raise StartupError("\n\n".join(errors))


@dataclass
class Suite:
    """The whole system on loopback: databases, Redis namespace and every service process."""

    log_dir: Path
    database_server: str = "postgresql://postgres@127.0.0.1:5432"
    redis_url: str = "redis://127.0.0.1:6379/0"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    ports: set[int] = field(default_factory=set)
    processes: list[ServiceProcess] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    # Gateway knobs the failure tests rely on (small, so the tests stay fast).
    read_timeout: float = 2.0
    deadline: float = 3.0
    breaker_failures: int = 3
    breaker_reset_seconds: float = 2.0

    def __post_init__(self) -> None:
        self.redis_prefix = f"tfsuite:{self.run_id}:"
        self.users_db = f"{self.database_server}/tf_suite_users_{self.run_id}"
        self.tasks_db = f"{self.database_server}/tf_suite_tasks_{self.run_id}"
        self.user: ServiceProcess | None = None
        self.task_replicas: list[ServiceProcess] = []
        self.stats: ServiceProcess | None = None
        self.gateway: ServiceProcess | None = None

    # ---- processes -------------------------------------------------------------------------

    def base_env(self, redis_prefix: str | None = None) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # Never let the developer's own configuration leak into the suite.
            if not key.endswith("DATABASE_URL")
            and not key.startswith(("GATEWAY_", "USER_SERVICE", "TASK_SERVICE", "STATS_SERVICE"))
            and key not in {"REDIS_URL", "REDIS_PREFIX", "JWT_SECRET", "MIGRATE_ON_START"}
        }
        env.update(
            ENVIRONMENT="test",
            JWT_SECRET=self.jwt_secret,
            REDIS_URL=self.redis_url,
            REDIS_PREFIX=redis_prefix or self.redis_prefix,
            LOG_JSON="true",
            LOG_LEVEL="INFO",
            MIGRATE_ON_START="true",
            PYTHONUNBUFFERED="1",
            # Below the suite gateway's 2 s read timeout, as the 5 s default is below its 10 s:
            # a replica frozen inside a transaction holds the rows it locked this long at most.
            DB_IDLE_IN_TRANSACTION_SECONDS="1",
        )
        return env

    def add_process(self, name: str, package: str, env: Mapping[str, str]) -> ServiceProcess:
        port = free_port(self.ports)
        process = ServiceProcess(
            name=name,
            package=package,
            port=port,
            env=dict(env),
            log_path=self.log_dir / f"{name}-{port}.log",
        )
        self.processes.append(process)
        return process

    def create_databases(self) -> None:
        from taskflow_kit.migrations import ensure_database

        for url in (self.users_db, self.tasks_db):
            self.databases.append(url)
            run_async(lambda url=url: ensure_database(url))  # type: ignore[misc]

    def drop_databases(self) -> None:
        from taskflow_kit.migrations import drop_database

        for url in self.databases:
            with contextlib.suppress(Exception):
                run_async(lambda url=url: drop_database(url))  # type: ignore[misc]
        self.databases.clear()

    def start(self) -> None:
        """Databases, then the services (two task replicas), then the gateway.

        A service whose package has not landed yet is left out; the gateway then points that
        upstream at a closed port (tests needing it are skipped at collection time).
        """
        atexit.register(self.close)  # an interpreter that exits early still stops everything
        _terminate_gracefully()
        self.create_databases()
        if package_available("user_service"):
            user_env = self.base_env() | {
                "USER_SERVICE_DATABASE_URL": self.users_db,
                "BCRYPT_ROUNDS": "4",
            }
            self.user = self.add_process("user-service", "user_service", user_env)
        later: list[ServiceProcess] = []
        if package_available("task_service"):
            task_env = self.base_env() | {
                "TASK_SERVICE_DATABASE_URL": self.tasks_db,
                "USER_SERVICE_URL": self.user_url,
            }
            self.task_replicas = [
                self.add_process("task-service-1", "task_service", task_env),
                self.add_process("task-service-2", "task_service", task_env),
            ]
            # The first replica starts with user-service and migrates the fresh database; the
            # second starts with the rest (the kit's advisory lock would serialise them anyway).
            later.append(self.task_replicas[1])
        if package_available("stats_service"):
            # stats-service reads aggregates from ONE task-service replica (the first): internal
            # routes are never routed by the gateway; the failure tests know which one it is.
            stats_env = self.base_env() | {
                "TASK_SERVICE_URL": self.task_urls[0],
                # Fresh figures expire after 1 s, so the failure test sees the stale path.
                "STATS_CACHE_TTL_SECONDS": "1",
                "TASK_SERVICE_TIMEOUT_SECONDS": "2",
            }
            self.stats = self.add_process("stats-service", "stats_service", stats_env)
            later.append(self.stats)
        first = [p for p in (self.user, *self.task_replicas[:1]) if p is not None]
        start_and_wait(first)
        start_and_wait(later)
        if package_available("api_gateway"):
            self.gateway = self.start_gateway("api-gateway")

    @property
    def closed_url(self) -> str:
        """A loopback URL where nothing listens (stands in for a service not landed yet)."""
        if not hasattr(self, "_closed_port"):
            self._closed_port = free_port(self.ports)
        return f"http://{LOOPBACK}:{self._closed_port}"

    @property
    def user_url(self) -> str:
        return self.user.url if self.user else self.closed_url

    @property
    def task_urls(self) -> list[str]:
        return [r.url for r in self.task_replicas] or [self.closed_url]

    @property
    def stats_url(self) -> str:
        return self.stats.url if self.stats else self.closed_url

    def gateway_env(self, *, redis_prefix: str | None = None, **overrides: str) -> dict[str, str]:
        env = self.base_env(redis_prefix) | {
            "GATEWAY_USER_SERVICE_URLS": self.user_url,
            "GATEWAY_TASK_SERVICE_URLS": ",".join(self.task_urls),
            "GATEWAY_STATS_SERVICE_URLS": self.stats_url,
            "GATEWAY_READ_TIMEOUT": str(self.read_timeout),
            "GATEWAY_DEADLINE": str(self.deadline),
            "GATEWAY_BREAKER_FAILURES": str(self.breaker_failures),
            "GATEWAY_BREAKER_RESET_SECONDS": str(self.breaker_reset_seconds),
            # Active probes bring a restarted replica back quickly.
            "GATEWAY_HEALTH_INTERVAL_SECONDS": "0.5",
            # The suite sends a few thousand requests from one address and a handful of users:
            # generous limits here, the rate-limit test starts its own gateways with low ones.
            "GATEWAY_RATE_LIMIT_PER_USER": "100000",
            "GATEWAY_RATE_LIMIT_PER_IP": "100000",
            "GATEWAY_RATE_LIMIT_WINDOW_SECONDS": "60",
            # The suite reads the status detail from loopback, as `make run` does (opt-in).
            "GATEWAY_TRUST_LOOPBACK": "true",
        }
        env.update(overrides)
        return env

    def gateway_process(
        self, name: str, *, redis_prefix: str | None = None, **overrides: str
    ) -> ServiceProcess:
        """A gateway process in front of this suite's services (not started yet)."""
        env = self.gateway_env(redis_prefix=redis_prefix, **overrides)
        return self.add_process(name, "api_gateway", env)

    def start_gateway(
        self, name: str, *, redis_prefix: str | None = None, **overrides: str
    ) -> ServiceProcess:
        gateway = self.gateway_process(name, redis_prefix=redis_prefix, **overrides)
        start_and_wait([gateway])
        return gateway

    def close(self) -> None:
        """Stop every process (paused ones too) and drop the databases. Safe to call twice."""
        threads = [threading.Thread(target=p.stop) for p in self.processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(STOP_TIMEOUT + 5)
        for process in self.processes:
            if process.running:
                process.kill()
        self.drop_databases()
        self.drop_redis_keys()

    def drop_redis_keys(self) -> None:
        """Delete this run's keys from the shared Redis (its namespace, `redis_prefix`)."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        finally:
            client.close()

    def logs_containing(self, needle: str, processes: Iterable[ServiceProcess]) -> list[str]:
        """Names of the processes whose log mentions `needle` (e.g. a request id)."""
        return [p.name for p in processes if needle in p.log_text()]


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = ""
) -> float:
    """Poll `predicate` until true; returns the seconds it took, fails after `timeout`."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what or predicate}")
        time.sleep(interval)


# ---- client helpers used by the tests --------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class User:
    id: int
    username: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register_and_login(client: httpx.Client, prefix: str = "user", *, richer: bool = False) -> User:
    """Register a fresh account and log in through the gateway.

    `richer=False` uses the frontend's spelling (`/auth/register`, JSON login), `True` the richer
    API's (`/users/`, OAuth2 form login).
    """
    username = unique(prefix)
    email = f"{username}@example.com"
    password = f"pw-{secrets.token_hex(8)}"
    body = {"email": email, "username": username, "password": password, "full_name": prefix}
    path = "/api/v1/users/" if richer else "/api/v1/auth/register"
    created = client.post(path, json=body)
    assert created.status_code == 201, created.text
    if richer:
        login = client.post(
            "/api/v1/users/login", data={"username": username, "password": password}
        )
    else:
        login = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert tokens["token_type"].lower() == "bearer"
    return User(
        id=created.json()["id"],
        username=username,
        email=email,
        password=password,
        token=tokens["access_token"],
    )


def is_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert `response` is an RFC 9457 problem with `status`; return its body."""
    assert response.status_code == status, f"{response.status_code} {response.text[:500]}"
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith("application/problem+json"), content_type
    body: dict[str, Any] = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, f"problem body lacks {key!r}: {body}"
    assert body["status"] == status
    return body


def require_services(*packages: str) -> None:
    """Skip the calling test module while a service it needs has not landed.

    Only a missing package skips: a package that exists but is broken fails loudly when its
    process does not start.
    """
    import pytest

    missing = [package for package in packages if not package_available(package)]
    if missing:
        pytest.skip(f"not landed yet: {', '.join(missing)}", allow_module_level=True)


ALL_SERVICES = ("user_service", "task_service", "stats_service", "api_gateway")
