"""`python -m taskflow_devstack run|migrate`: the whole suite on 127.0.0.1 in one command.

With no DATABASE_URL / REDIS_URL (or per-service equivalents) configured, an embedded PostgreSQL
and Redis are started with their data under `.data/`. Each service then runs as a uvicorn
process (services apply their own migrations at start), the gateway last; output is prefixed
with the service name; Ctrl-C stops everything cleanly.

No JWT_SECRET configured (in the environment or ./.env): a random one is generated once into
`.data/jwt_secret` (readable by its owner only) and reused on every start, so tokens survive a
restart and nobody else knows the secret.

A second stack beside the first (the benchmark's) sets TASKFLOW_DATA_DIR (instead of `.data/`)
and TASKFLOW_PORT_OFFSET (added to every service port; the services' URLs of one another follow).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from taskflow_devstack.embedded import EmbeddedPostgres, EmbeddedRedis, wait_for_port
from taskflow_devstack.processes import uvicorn_command


@dataclass(frozen=True)
class Service:
    name: str
    package: str
    port: int
    database: str | None = None

    @property
    def database_env(self) -> str:
        return f"{self.package.upper()}_DATABASE_URL"


SERVICES = [
    Service("user-service", "user_service", 8001, "taskflow_users"),
    Service("task-service", "task_service", 8002, "taskflow_tasks"),
    Service("stats-service", "stats_service", 8003),
    Service("api-gateway", "api_gateway", 8000),
]
COLOURS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m"]
RESET = "\033[0m"


def available(service: Service) -> bool:
    return importlib.util.find_spec(f"{service.package}.main") is not None


def database_url(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + f"/{name}"


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.env = dict(os.environ)
        # Loopback clients see the gateway's status detail and /metrics without a token: opted
        # in here only (`make run` on a developer's machine); the gateway's default is off.
        self.env.setdefault("GATEWAY_TRUST_LOOPBACK", "true")
        self.data = Path(self.env.get("TASKFLOW_DATA_DIR") or root / ".data")
        self.port_offset = int(self.env.get("TASKFLOW_PORT_OFFSET", "0"))

    def port(self, service: Service) -> int:
        return service.port + self.port_offset

    def jwt_secret(self) -> None:
        """Use the configured JWT_SECRET, else this data folder's own, made once."""
        if self.env.get("JWT_SECRET") or _dotenv_defines(self.root / ".env", "JWT_SECRET"):
            return
        path = self.data / "jwt_secret"
        if not path.exists():
            self.data.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(48))
            log(f"generated a JWT secret of this stack's own in {path}")
        self.env["JWT_SECRET"] = path.read_text().strip()

    def service_urls(self) -> None:
        """Point the services at one another's (offset) ports unless configured."""
        ports = {s.package: self.port(s) for s in SERVICES}
        defaults = {
            "USER_SERVICE_URL": ports["user_service"],
            "TASK_SERVICE_URL": ports["task_service"],
            "GATEWAY_USER_SERVICE_URLS": ports["user_service"],
            "GATEWAY_TASK_SERVICE_URLS": ports["task_service"],
            "GATEWAY_STATS_SERVICE_URLS": ports["stats_service"],
        }
        for name, port in defaults.items():
            self.env.setdefault(name, f"http://127.0.0.1:{port}")

    def start_backing_services(self) -> None:
        self.jwt_secret()
        services_with_db = [s for s in SERVICES if s.database and available(s)]
        needs_db = not self.env.get("DATABASE_URL") and any(
            not self.env.get(s.database_env) for s in services_with_db
        )
        if needs_db:
            port = int(self.env.get("TASKFLOW_EMBEDDED_PG_PORT", "54329"))
            self.postgres = EmbeddedPostgres(self.data / "postgres", port)
            log(f"embedded PostgreSQL on 127.0.0.1:{port} (data in .data/postgres)")
            self.postgres.start()
        for service in services_with_db:
            if service.database_env in self.env:
                continue
            if self.env.get("DATABASE_URL"):
                self.env[service.database_env] = self.env["DATABASE_URL"]
            elif self.postgres and service.database:
                self.env[service.database_env] = database_url(self.postgres.url, service.database)
        if not self.env.get("REDIS_URL"):
            port = int(self.env.get("TASKFLOW_EMBEDDED_REDIS_PORT", "63790"))
            self.redis = EmbeddedRedis(self.data / "redis", port)
            log(f"embedded Redis on 127.0.0.1:{port} (data in .data/redis)")
            self.redis.start()
            self.env["REDIS_URL"] = self.redis.url
        if self.port_offset:
            self.service_urls()
        self.env.setdefault("LOG_JSON", "false")
        self.env.setdefault("PYTHONUNBUFFERED", "1")

    def stop_backing_services(self) -> None:
        if self.redis:
            self.redis.stop()
        if self.postgres:
            log("stopping embedded PostgreSQL")
            self.postgres.stop()


def _dotenv_defines(path: Path, name: str) -> bool:
    if not path.is_file():
        return False
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() == name and value.strip().strip("'\""):
            return True
    return False


def log(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def run(stack: Stack) -> int:
    services = [s for s in SERVICES if available(s)]
    if not services:
        log("no service packages are installed: run `uv sync --all-packages`")
        return 1
    stack.start_backing_services()
    processes: list[tuple[Service, subprocess.Popen[bytes]]] = []
    selector = selectors.DefaultSelector()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for index, service in enumerate(services):
            command = uvicorn_command(
                f"{service.package}.main:create_app",
                factory=True,
                host=stack.env.get("TASKFLOW_HOST", "127.0.0.1"),
                port=stack.port(service),
                access_log=False,
            )
            process = subprocess.Popen(
                command,
                env=stack.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            processes.append((service, process))
            assert process.stdout is not None
            selector.register(process.stdout, selectors.EVENT_READ, (service, index))
        ready = {s.name: False for s in services}
        started = time.monotonic()
        while not stopping:
            for key, _ in selector.select(timeout=0.5):
                service, index = key.data
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if not line:
                    selector.unregister(key.fileobj)
                    continue
                colour = COLOURS[index % len(COLOURS)]
                text = line.decode(errors="replace").rstrip()
                print(f"{colour}{service.name:>13}{RESET} | {text}", flush=True)
            for service, process in processes:
                if process.poll() is not None:
                    log(f"{service.name} exited with {process.returncode}; stopping the suite")
                    stopping = True
            if not all(ready.values()) and time.monotonic() - started < 120:
                for service in services:
                    if not ready[service.name]:
                        try:
                            wait_for_port("127.0.0.1", stack.port(service), seconds=0.01)
                        except RuntimeError:
                            continue
                        ready[service.name] = True
                        log(f"{service.name} listening on http://127.0.0.1:{stack.port(service)}")
                if all(ready.values()):
                    gateway = [s for s in services if s.port == 8000]
                    entry = stack.port((gateway or services)[0])
                    log(f"ready: http://127.0.0.1:{entry}/docs  (Ctrl-C stops everything)")
        return 0
    finally:
        for _, process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.stop_backing_services()


def migrate(stack: Stack) -> int:
    import asyncio

    from taskflow_kit.migrations import ensure_database, upgrade_to_head

    stack.start_backing_services()
    try:
        for service in SERVICES:
            if not service.database or not available(service):
                continue
            url = stack.env[service.database_env]
            alembic_ini = stack.root / service.name / "alembic.ini"
            asyncio.run(ensure_database(url))
            upgrade_to_head(alembic_ini, url)
            log(f"{service.name}: migrated to head")
        return 0
    finally:
        stack.stop_backing_services()


def main() -> int:
    parser = argparse.ArgumentParser(prog="taskflow_devstack", description=__doc__)
    parser.add_argument("command", choices=["run", "migrate"])
    parser.add_argument("--root", type=Path, default=Path.cwd())
    args = parser.parse_args()
    stack = Stack(args.root.resolve())
    return run(stack) if args.command == "run" else migrate(stack)


if __name__ == "__main__":
    sys.exit(main())
