"""Faults under a steady request stream, counted (docs/reliability.md quotes the counts).

A fault rig of its own: one task-service on a throwaway PostgreSQL and a throwaway Redis, and a
gateway on that Redis in front of it (users from the suite's user-service). The rig's database
and Redis are stopped and restarted under load; a task-service replica of the main suite is
killed with SIGKILL and frozen with SIGSTOP; the rig's task-service gets SIGTERM with requests
in flight; a gateway with a small rate limit is driven past it. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import (
    ALL_SERVICES,
    LOOPBACK,
    ServiceProcess,
    Suite,
    User,
    free_port,
    register_and_login,
    require_services,
    start_and_wait,
    wait_until,
)
from tests.reliability import figures

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

PG_BIN = Path("/usr/lib/postgresql/15/bin")
API = "/api/v1"


# ---- throwaway backing stores ----------------------------------------------------------------


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL 15 cluster in a temporary folder on its own port (trust auth)."""

    port: int
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tf-pg-")))

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/tasks"

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
        self._run(
            "initdb",
            "-D",
            str(self.folder / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={LOOPBACK} -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.folder / "data"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "-l",
            str(self.folder / "log"),
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class ThrowawayRedis:
    port: int
    process: subprocess.Popen[bytes] | None = None
    on_start: Callable[[], None] | None = None  # run each time it has started (empty)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=10, what="the throwaway Redis to answer")
        if self.on_start is not None:
            self.on_start()

    def _answers(self) -> bool:
        import socket

        with socket.socket() as sock:
            return sock.connect_ex((LOOPBACK, self.port)) == 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def mark_epoch(redis: ThrowawayRedis, prefix: str) -> None:
    """The rig's Redis has no user-service (its users come from the suite's): user-service's
    epoch key is set as its relay would set it, also after each restart (this Redis comes back
    empty), or the rig's token checks would wait for a revocation map and answer 503."""
    from taskflow_kit.testing import mark_revocations_complete

    from tests.harness import run_async

    run_async(lambda: mark_revocations_complete(redis.url, prefix))


@dataclass
class Rig:
    postgres: ThrowawayPostgres
    redis: ThrowawayRedis
    task: ServiceProcess
    gateway: ServiceProcess
    user: User


@pytest.fixture(scope="module")
def rig(suite: Suite, client: httpx.Client) -> Iterator[Rig]:
    if not (PG_BIN / "initdb").exists() or shutil.which("redis-server") is None:
        pytest.skip("PostgreSQL 15 binaries or redis-server missing")
    if os.geteuid() == 0:
        pwd.getpwnam("postgres")
    postgres = ThrowawayPostgres(free_port(suite.ports))
    redis = ThrowawayRedis(free_port(suite.ports))
    postgres.init()
    redis.start()
    from taskflow_kit.migrations import ensure_database

    from tests.harness import run_async

    run_async(lambda: ensure_database(postgres.url))
    redis.on_start = lambda: mark_epoch(redis, f"{suite.redis_prefix}rig:")
    mark_epoch(redis, f"{suite.redis_prefix}rig:")
    env = suite.base_env(redis_prefix=f"{suite.redis_prefix}rig:") | {
        "TASK_SERVICE_DATABASE_URL": postgres.url,
        "USER_SERVICE_URL": suite.user_url,
        "REDIS_URL": redis.url,
    }
    task = suite.add_process("rig-task-service", "task_service", env)
    start_and_wait([task])
    gateway = suite.start_gateway(
        "rig-gateway",
        redis_prefix=f"{suite.redis_prefix}rig:",
        GATEWAY_TASK_SERVICE_URLS=task.url,
        REDIS_URL=redis.url,
    )
    try:
        yield Rig(postgres, redis, task, gateway, register_and_login(client, "rig"))
    finally:
        for process in (gateway, task):
            process.stop()
        redis.stop()
        postgres.remove()


# ---- the request stream ----------------------------------------------------------------------


@dataclass
class Outcome:
    at: float
    kind: str
    status: int | str
    body: Any = None


class Stream:
    """Worker threads sending a mix of requests until stopped; every outcome recorded."""

    def __init__(
        self,
        base_url: str,
        calls: dict[str, Callable[[httpx.Client], httpx.Response]],
        *,
        workers: int = 3,
    ) -> None:
        self.base_url = base_url
        self.calls = list(calls.items())
        self.workers = workers
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _work(self, offset: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=5.0) as http:
            n = offset
            while not self._stop.is_set():
                kind, call = self.calls[n % len(self.calls)]
                n += 1
                try:
                    response = call(http)
                    status: int | str = response.status_code
                    # A 201's task, and a failure's problem detail (it says who refused).
                    body = response.json() if response.status_code == 201 else None
                    if response.status_code >= 500:
                        body = response.text[:300]
                except httpx.HTTPError as exc:
                    status, body = type(exc).__name__, None
                with self._lock:
                    self.outcomes.append(Outcome(time.monotonic(), kind, status, body))
                time.sleep(0.01)  # a steady stream, not a flood

    def __enter__(self) -> Stream:
        self._threads = [
            threading.Thread(target=self._work, args=(n,), daemon=True) for n in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def since(self, moment: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.at >= moment]

    def record(self, category: str) -> None:
        figures.count(category, "requests", len(self.outcomes))
        for outcome in self.outcomes:
            key = (
                f"{outcome.status // 100}xx"
                if isinstance(outcome.status, int)
                else f"transport_error:{outcome.status}"
            )
            figures.count(category, key)
            figures.count(category, f"{outcome.kind}:{outcome.status}")


def rig_calls(user: User) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    return {
        "task_write": lambda http: http.post(
            f"{API}/tasks/", json={"title": "stream"}, headers=user.headers
        ),
        "task_read": lambda http: http.get(f"{API}/tasks/", headers=user.headers),
        "user_read": lambda http: http.get(f"{API}/users/me", headers=user.headers),
    }


def ready_status(process: ServiceProcess) -> int:
    try:
        return httpx.get(f"{process.url}/ready", timeout=3.0).status_code
    except httpx.HTTPError:
        return 0


# ---- the faults ------------------------------------------------------------------------------


def test_database_outage_fails_only_that_service_and_recovers_without_restart(rig: Rig) -> None:
    starts = rig.task.starts
    with Stream(rig.gateway.url, rig_calls(rig.user)) as stream:
        wait_until(lambda: stream.count() >= 30, timeout=20, what="the stream to get going")
        rig.postgres.stop()
        figures.count("fault_database", "faults_injected")
        down_at = time.monotonic()
        wait_until(
            lambda: ready_status(rig.task) == 503, timeout=15, what="readiness to flip to 503"
        )
        wait_until(
            lambda: sum(1 for o in stream.since(down_at) if o.status == 503) >= 10,
            timeout=20,
            what="503s from task-service during the outage",
        )
        rig.postgres.start()
        up_at = time.monotonic()
        wait_until(lambda: ready_status(rig.task) == 200, timeout=30, what="readiness to recover")
        wait_until(
            lambda: (
                sum(
                    1 for o in stream.since(up_at + 2) if o.kind == "task_write" and o.status == 201
                )
                >= 5
            ),
            timeout=30,
            what="writes to succeed again",
        )
    stream.record("fault_database")
    during = [o for o in stream.outcomes if down_at <= o.at <= up_at]
    task_failures = Counter(
        o.status for o in during if o.kind != "user_read" and o.status not in (200, 201)
    )
    # user-service has its own database: not one of its requests failed.
    assert {o.status for o in stream.outcomes if o.kind == "user_read"} == {200}
    # task-service answered 503 (with Retry-After) while its database was away, never 500.
    assert set(task_failures) <= {503}, task_failures
    assert task_failures[503] > 0
    assert not [
        o
        for o in stream.outcomes
        if isinstance(o.status, int) and o.status >= 500 and o.status != 503
    ]
    assert rig.task.starts == starts  # recovered without a restart
    # No committed write lost: every 201 is there.
    created = {o.body["id"] for o in stream.outcomes if o.status == 201}
    with httpx.Client(base_url=rig.gateway.url, timeout=10) as http:
        for task_id in created:
            assert http.get(f"{API}/tasks/{task_id}", headers=rig.user.headers).status_code == 200
    figures.count("fault_database", "committed_writes_checked", len(created))


def test_redis_outage_fails_no_request(rig: Rig) -> None:
    with Stream(rig.gateway.url, rig_calls(rig.user)) as stream:
        wait_until(lambda: stream.count() >= 30, timeout=20, what="the stream to get going")
        rig.redis.stop()
        figures.count("fault_redis", "faults_injected")
        down_at = time.monotonic()
        wait_until(
            lambda: len(stream.since(down_at)) >= 60, timeout=30, what="requests during the outage"
        )
        rig.redis.start()
        up_at = time.monotonic()
        wait_until(
            lambda: len(stream.since(up_at)) >= 30, timeout=30, what="requests after Redis is back"
        )
    stream.record("fault_redis")
    failed = Counter(o.status for o in stream.outcomes if o.status not in (200, 201))
    # Rate limits fail open to a local count and events wait in the outbox: nothing fails.
    assert not failed, failed


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
def test_task_replica_fault_under_a_stream(
    gateway: ServiceProcess,
    restore_replicas: list[ServiceProcess],
    client: httpx.Client,
    fault: str,
) -> None:
    owner = register_and_login(client, f"replica{fault.lower()}")
    victim = restore_replicas[1]
    calls = {
        "task_read": lambda http: http.get(f"{API}/tasks/", headers=owner.headers),
        "task_write": lambda http: http.post(
            f"{API}/tasks/", json={"title": "w"}, headers=owner.headers
        ),
    }
    with Stream(gateway.url, calls) as stream:
        wait_until(lambda: stream.count() >= 30, timeout=20, what="the stream to get going")
        if fault == "SIGKILL":
            victim.kill()
        else:
            victim.pause()
        figures.count("fault_replica", "faults_injected")
        hit_at = time.monotonic()
        wait_until(
            lambda: len(stream.since(hit_at)) >= 80, timeout=40, what="requests after the fault"
        )
        if fault == "SIGSTOP":
            victim.resume()
    stream.record(f"fault_replica_{fault.lower()}")
    reads = Counter(o.status for o in stream.outcomes if o.kind == "task_read")
    writes = Counter(o.status for o in stream.outcomes if o.kind == "task_write")
    # Reads are retried on the other replica; a write in flight on the victim may be lost to
    # the client (502/504: outcome unknown, never replayed), nothing else. A frozen replica
    # keeps accepting connections: a read already waiting on it when it froze can run out of
    # the gateway's deadline (504) before the replica is ejected — at most one per worker.
    failures = Counter(
        re.sub(r'"request_id":"[^"]*"', "", str(o.body))
        for o in stream.outcomes
        if o.body and o.kind == "task_read"
    )
    assert set(reads) <= {200, 504}, (reads, failures)
    assert reads[504] <= stream.workers, reads
    assert set(writes) <= {201, 502, 504}, writes
    assert writes[201] >= 20


def test_sigterm_with_requests_in_flight(rig: Rig) -> None:
    headers = rig.user.headers
    rig.task.ensure_running()
    barrier = threading.Barrier(9)

    def request(n: int) -> int | str:
        with httpx.Client(base_url=rig.task.url, timeout=10.0) as http:
            barrier.wait(10)
            try:
                return http.post(
                    f"{API}/tasks/", json={"title": f"inflight-{n}"}, headers=headers
                ).status_code
            except httpx.ConnectError:
                return "refused"  # arrived after the socket closed: never reached the service
            except httpx.HTTPError as exc:
                return type(exc).__name__

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(request, n) for n in range(8)]
        barrier.wait(10)
        time.sleep(0.02)  # let the requests leave; SIGTERM lands while they are served
        stopped_at = time.monotonic()
        rig.task.signal(signal.SIGTERM)
        results = [future.result(timeout=30) for future in futures]
    assert rig.task.process is not None
    rig.task.process.wait(15)
    exited_in = time.monotonic() - stopped_at
    figures.count("fault_sigterm", "faults_injected")
    for result in results:
        figures.count("fault_sigterm", "requests")
        figures.count("fault_sigterm", f"status:{result}")
    rig.task.ensure_running()
    # Every request either completed, or was closed by the server before it was read (uvicorn
    # closes connections without a request in progress on shutdown): then it changed nothing.
    assert set(results) <= {201, "refused", "ReadError", "RemoteProtocolError"}, results
    assert results.count(201) >= 1
    with httpx.Client(base_url=rig.task.url, timeout=10.0) as http:
        titles = {
            task["title"]
            for task in http.get(
                f"{API}/tasks/", params={"search": "inflight-", "limit": 100}, headers=headers
            ).json()["tasks"]
        }
    for n, result in enumerate(results):
        assert (f"inflight-{n}" in titles) == (result == 201), (n, result)
        if result != 201:
            figures.count("fault_sigterm", "closed_before_read_nothing_changed")
    assert exited_in < 10


def test_overload_is_refused_fast_with_bounded_memory(suite: Suite, client: httpx.Client) -> None:
    limited = suite.start_gateway(
        "overload-gateway",
        redis_prefix=f"{suite.redis_prefix}overload:",
        GATEWAY_RATE_LIMIT_PER_USER="30",
        GATEWAY_RATE_LIMIT_WINDOW_SECONDS="60",
    )
    user = register_and_login(client, "overload")

    def rss_kib() -> int:
        for line in Path(f"/proc/{limited.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def hit(_: int) -> tuple[int | str, float]:
        started = time.monotonic()
        try:
            status: int | str = http.get(f"{API}/tasks/", headers=user.headers).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        return status, time.monotonic() - started

    try:
        with httpx.Client(
            base_url=limited.url, timeout=10.0, limits=httpx.Limits(max_connections=16)
        ) as http:
            before = rss_kib()
            with ThreadPoolExecutor(max_workers=16) as pool:
                results = list(pool.map(hit, range(600)))
            after = rss_kib()
    finally:
        limited.stop()
    statuses = Counter(status for status, _ in results)
    refused = sorted(duration for status, duration in results if status in (429, 503))
    figures.count("fault_overload", "faults_injected")
    figures.count("fault_overload", "requests", len(results))
    for status, amount in statuses.items():
        figures.count("fault_overload", f"status:{status}", amount)
    figures.count("fault_overload", "refusal_p95_ms", int(refused[int(len(refused) * 0.95)] * 1000))
    figures.count("fault_overload", "rss_growth_kib", max(0, after - before))
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses[200] <= 30
    assert statuses[429] >= 500
    assert refused[int(len(refused) * 0.95)] < 0.5  # refusals are fast
    assert after - before < 64 * 1024  # bounded memory: under 64 MiB growth for 600 requests


@pytest.fixture(scope="module", autouse=True)
def _write_figures() -> Any:
    yield
    figures.write()
