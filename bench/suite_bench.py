"""Suite benchmark (`make bench` quick, `make bench-full`): the whole TaskFlow suite under a
frontend's load, with its baselines, in one invocation.

Each stack is the launcher of `make run` (`python -m taskflow_devstack run`: embedded PostgreSQL
and Redis, every service a uvicorn process, the gateway in front) on its own data directory
(`.data/bench/<label>/`) and ports (TASKFLOW_PORT_OFFSET). `--compare REV` starts a second stack
from a git worktree of REV (its own virtualenv, synced from its own uv.lock) beside the current
working tree, and every scenario runs on both, interleaved, round after round.

Data is seeded through the public API (accounts registered and logged in once each, tasks
created with tags, due dates, dependencies and assignees) and kept in the data directory for the
next run. Then, per stack and round:
  * mix, closed loop: the frontend mix through the gateway, no think time (saturation);
  * mix, open loop: 200 virtual users with 1-3 s think time (latency from the schedule);
  * each hot route alone (closed loop), through the gateway and straight to its service;
  * the raw-asyncpg baselines (bench/baseline_asyncpg.py): task-service's GET /tasks/{id} and
    filtered list queries, token verified in both;
  * logins (bcrypt-bound) in a closed loop while the mix runs at a fixed rate: login/s, and the
    mix's p99 with and without them.
For each: req/s, failures, p50/p99, CPU microseconds per request of every process (utime+stime
from /proc/<pid>/stat over the window) and peak RSS (sampled VmRSS). It prints one table and the
goals of issue 10, writes bench/results/<timestamp>.json and .png.

Usage: python bench/suite_bench.py [--full] [--compare REV] [--rounds N] [--fresh]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from taskflow_devstack.processes import uvicorn_command

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen.core import Client, Recorder, closed_loop, fixed_rate, open_loop, percentile
from loadgen.frontend import FILTERS, Account, FrontendUser, Targets, task_body, users_of

ROOT = Path(__file__).resolve().parents[1]
BENCH_DATA = ROOT / ".data" / "bench"
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SERVICES = {  # process label -> (package, port without offset)
    "gateway": ("api_gateway", 8000),
    "user": ("user_service", 8001),
    "task": ("task_service", 8002),
    "stats": ("stats_service", 8003),
}
BASELINE_PORT = 8010
# Every stack signs with this secret (fixed, so the tokens cached in .data/bench survive runs;
# never used outside the benchmark), and the baseline verifies tokens with it too.
BENCH_JWT_SECRET = "taskflow-bench-only-secret-0123456789-abcdefghij"
# Stacks sit at 10000 / 11000 plus the caller's TASKFLOW_PORT_OFFSET, so benchmarks of several
# worktrees on one machine do not collide.
PORT_BASE = int(os.environ.get("TASKFLOW_PORT_OFFSET", "0"))
ISSUE_10 = {  # goals of issue 10 that this harness measures
    "read_vs_asyncpg": 0.50,
    "filtered_vs_asyncpg": 0.35,
    "write_cpu_ms": 1.5,
    "gateway_cpu_us": 350.0,
    "mix_speedup": 3.0,
    "open_p99_ms": 100.0,
    "rss_mb": 200.0,
    "startup_s": 15.0,
}


@dataclass(frozen=True)
class Profile:
    accounts: int
    tasks_per_account: int
    concurrency: int
    open_users: int
    warmup: float
    mix_seconds: float
    open_seconds: float
    route_seconds: float
    login_seconds: float
    login_background_rate: float
    gateway_routes: tuple[str, ...]
    direct_routes: tuple[str, ...]
    rounds: int


# Every route straight to its service, in both profiles (the quick one trims only the gateway's).
DIRECT_ROUTES = (
    "list",
    "filtered",
    "read",
    "create",
    "update",
    "complete",
    "churn",
    "stats",
    "me",
)
QUICK = Profile(
    accounts=32,
    tasks_per_account=25,
    concurrency=32,
    open_users=200,
    warmup=1.5,
    mix_seconds=12,
    open_seconds=12,
    route_seconds=4,
    login_seconds=5,
    login_background_rate=40,
    gateway_routes=("list", "read", "create", "stats", "me"),
    direct_routes=DIRECT_ROUTES,
    rounds=1,
)
FULL = Profile(
    accounts=200,
    tasks_per_account=50,
    concurrency=64,
    open_users=200,
    warmup=3,
    mix_seconds=30,
    open_seconds=30,
    route_seconds=12,
    login_seconds=15,
    login_background_rate=60,
    gateway_routes=("list", "filtered", "read", "create", "update", "complete", "stats", "me"),
    direct_routes=DIRECT_ROUTES,
    rounds=3,
)


def log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# -- processes and their CPU / memory ---------------------------------------------------------


def proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime+stime, cutime+cstime) in clock ticks, or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat and stat[0] == pid:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class Watched:
    """A named process; `tree` adds its children (PostgreSQL's backends) and reaped ones."""

    name: str
    pid: int
    tree: bool = False
    _children: list[int] = field(default_factory=list)
    _listed: float = 0.0

    def children(self) -> list[int]:
        """The children, listed again at most every 5 s (a /proc scan costs the generator)."""
        if time.monotonic() - self._listed > 5:
            self._children, self._listed = children_of(self.pid), time.monotonic()
        return self._children

    def cpu_ticks(self) -> int:
        own = proc_stat(self.pid)
        if own is None:
            return 0
        if not self.tree:
            return own[1]
        total = own[1] + own[2]
        for child in self.children():
            stat = proc_stat(child)
            if stat:
                total += stat[1]
        return total

    def rss(self) -> int:
        if not self.tree:
            return rss_bytes(self.pid)
        return rss_bytes(self.pid) + sum(rss_bytes(c) for c in self.children())


class Meter:
    """CPU per process over a window, and peak RSS sampled every 0.5 s during it."""

    def __init__(self, processes: list[Watched]) -> None:
        self.processes = processes
        self.start_ticks: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._sampler: asyncio.Task[None] | None = None

    def begin(self) -> None:
        for p in self.processes:
            p._listed = 0.0
        self.start_ticks = {p.name: p.cpu_ticks() for p in self.processes}
        self.peak = {p.name: p.rss() for p in self.processes}
        self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for p in self.processes:
                self.peak[p.name] = max(self.peak[p.name], p.rss())

    def end(self) -> tuple[dict[str, float], dict[str, float]]:
        """CPU seconds and peak RSS (MB) per process since `begin`."""
        if self._sampler:
            self._sampler.cancel()
        for p in self.processes:
            p._listed = 0.0
        cpu = {p.name: (p.cpu_ticks() - self.start_ticks[p.name]) / CLK_TCK for p in self.processes}
        peak = {name: value / 2**20 for name, value in self.peak.items()}
        return cpu, peak


# -- a stack: the devstack launcher on its own data directory and ports --------------------------


@dataclass
class Stack:
    label: str
    root: Path
    python: Path
    offset: int
    revision: str
    process: subprocess.Popen[bytes] | None = None
    watched: list[Watched] = field(default_factory=list)
    startup_seconds: float = 0.0
    accounts: list[Account] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return BENCH_DATA / self.label

    def port(self, label: str) -> int:
        return SERVICES[label][1] + self.offset

    def url(self, label: str) -> str:
        return f"http://127.0.0.1:{self.port(label)}"

    @property
    def pg_port(self) -> int:
        return 5432 + self.offset

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/taskflow_tasks"

    @property
    def baseline_url(self) -> str:
        return f"http://127.0.0.1:{BASELINE_PORT + self.offset}"

    def environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith(("DATABASE_URL", "REDIS_URL"))
            and not k.startswith(("GATEWAY_", "USER_SERVICE", "TASK_SERVICE", "VIRTUAL_ENV"))
        }
        env.update(
            TASKFLOW_DATA_DIR=str(self.data),
            TASKFLOW_PORT_OFFSET=str(self.offset),
            TASKFLOW_EMBEDDED_PG_PORT=str(self.pg_port),
            TASKFLOW_EMBEDDED_REDIS_PORT=str(6379 + self.offset),
            # Every virtual user comes from 127.0.0.1: the per-address and per-user limits are
            # raised so that nothing is refused; the limiter still counts every request.
            GATEWAY_RATE_LIMIT_PER_IP="100000000",
            GATEWAY_RATE_LIMIT_PER_USER="100000000",
            # user-service's per-route budgets (register/login/refresh per address and account)
            # would refuse the login storm from one address: the benchmark measures bcrypt.
            ROUTE_BUDGETS_ENABLED="false",
            ACCESS_TOKEN_EXPIRE_MINUTES="240",  # one token per account for the whole run
            JWT_SECRET=BENCH_JWT_SECRET,
        )
        if self.root != ROOT:  # the current launcher drives the worktree's services
            env["PYTHONPATH"] = str(ROOT / "libs" / "devstack" / "src")
        return env

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        for label in SERVICES:
            if port_open(self.port(label)):
                raise RuntimeError(f"port {self.port(label)} is taken: a stack already runs there")
        log_file = (self.data / "suite.log").open("ab")
        started = time.monotonic()
        self.process = subprocess.Popen(
            [str(self.python), "-m", "taskflow_devstack", "run", "--root", str(self.root)],
            cwd=self.root,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        pending = set(SERVICES)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label}: the launcher exited; see {self.data}/suite.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: not healthy in 180 s: {sorted(pending)}")
            for label in list(pending):
                if http_ok(f"{self.url(label)}/health"):
                    pending.discard(label)
            time.sleep(0.1)
        self.startup_seconds = time.monotonic() - started
        self.watched = self._discover()
        log(f"{self.label}: healthy in {self.startup_seconds:.1f} s ({self.revision})")

    def _discover(self) -> list[Watched]:
        assert self.process is not None
        watched = []
        children = children_of(self.process.pid)
        for label, (package, _) in SERVICES.items():
            pids = [c for c in children if f"{package}.main:create_app" in cmdline(c)]
            if len(pids) != 1:
                raise RuntimeError(f"{self.label}: expected one {package} process, found {pids}")
            watched.append(Watched(label, pids[0]))
        redis = [c for c in children if "redis-server" in cmdline(c)]
        if redis:
            watched.append(Watched("redis", redis[0]))
        pidfile = self.data / "postgres" / "postmaster.pid"
        watched.append(Watched("postgres", int(pidfile.read_text().split()[0]), tree=True))
        watched.append(Watched("devstack", self.process.pid))
        return watched

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@dataclass
class Baseline:
    """bench/baseline_asyncpg.py on one stack's database."""

    stack: Stack
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Watched:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["BASELINE_DATABASE_URL"] = self.stack.database_url
        env["BASELINE_JWT_SECRET"] = BENCH_JWT_SECRET
        port = BASELINE_PORT + self.stack.offset
        self.process = subprocess.Popen(
            uvicorn_command(
                "baseline_asyncpg:app",
                app_dir=ROOT / "bench",
                port=port,
                access_log=False,
                log_level="warning",
            ),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=(self.stack.data / "baseline.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{port}/health"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"baseline did not start; see {self.stack.data}/baseline.log")
            time.sleep(0.1)
        return Watched("baseline", self.process.pid)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def worktree(revision: str) -> tuple[Path, Path, str]:
    """A git worktree of `revision` under .data/bench/worktrees, its virtualenv synced."""
    sha = (
        subprocess.run(
            ["git", "rev-parse", "--short", revision], cwd=ROOT, check=True, capture_output=True
        )
        .stdout.decode()
        .strip()
    )
    path = BENCH_DATA / "worktrees" / sha
    if not (path / ".git").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), sha],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    subprocess.run(
        [uv, "sync", "--all-packages", "--frozen", "--quiet"], cwd=path, env=env, check=True
    )
    return path, path / ".venv" / "bin" / "python", sha


# -- seeding through the public API ------------------------------------------------------------


async def seed(stack: Stack, profile: Profile) -> None:
    """Register the accounts (once per data directory), log each in once, create the tasks
    each account is short of, and collect every account's task ids."""
    gateway = stack.url("gateway")
    recorder = Recorder()
    client = Client(recorder, connections=32)
    accounts = [
        Account(f"bench{i:04d}", f"bench-password-{i:04d}") for i in range(profile.accounts)
    ]
    marker = stack.data / "accounts.json"
    known: dict[str, dict[str, Any]] = json.loads(marker.read_text()) if marker.exists() else {}
    if isinstance(known, list):  # an older marker: names only
        known = {name: {} for name in known}
    bcrypt_slots = asyncio.Semaphore(4)
    started = time.perf_counter()

    async def cached_token(account: Account) -> bool:
        """Reuse the token of a previous run while it is valid (tokens live 4 h here)."""
        saved = known.get(account.username, {})
        if not saved.get("token") or time.time() - saved.get("issued", 0) > 3 * 3600:
            return False
        account.token, account.user_id = saved["token"], int(saved["id"])
        status, _ = await client.request(
            "me", "GET", f"{gateway}/api/v1/auth/me", headers=account.headers, expect=(200, 401)
        )
        return status == 200

    async def register_and_login(account: Account) -> None:
        if await cached_token(account):
            return
        async with bcrypt_slots:
            if account.username not in known:
                status, body = await client.request(
                    "register",
                    "POST",
                    f"{gateway}/api/v1/auth/register",
                    json={
                        "email": f"{account.username}@bench.taskflow.dev",
                        "username": account.username,
                        "password": account.password,
                        "full_name": f"Bench {account.username}",
                    },
                    expect=(201, 409),
                )
            status, body = await client.request(
                "login",
                "POST",
                f"{gateway}/api/v1/auth/login",
                json={"username": account.username, "password": account.password},
            )
            if status != 200:
                raise RuntimeError(f"login of {account.username} failed: {status} {body[:200]!r}")
            account.token = json.loads(body)["access_token"]
            _, body = await client.request(
                "me", "GET", f"{gateway}/api/v1/auth/me", headers=account.headers
            )
            account.user_id = int(json.loads(body)["id"])
            known[account.username] = {
                "token": account.token,
                "id": account.user_id,
                "issued": time.time(),
            }

    try:
        await asyncio.gather(*(register_and_login(a) for a in accounts))
        marker.write_text(json.dumps(known))
        logins = time.perf_counter() - started
        log(f"{stack.label}: {len(accounts)} accounts have a token ({logins:.1f} s)")

        rng = random.Random(10)
        create_slots = asyncio.Semaphore(16)

        async def ids_of(account: Account) -> list[int]:
            ids: list[int] = []
            skip = 0
            while True:
                _, body = await client.request(
                    "list",
                    "GET",
                    f"{gateway}/api/v1/tasks/?scope=owned&limit=100&skip={skip}&sort_by=created_at",
                    headers=account.headers,
                )
                page = json.loads(body)
                ids.extend(int(t["id"]) for t in page["tasks"])
                skip += 100
                if skip >= page["total"]:
                    return ids

        async def fill(index: int, account: Account) -> None:
            have = await ids_of(account)
            for number in range(len(have), profile.tasks_per_account):
                body = task_body(rng, number)
                if number % 10 == 9:  # shared with the next account
                    body["assignee_id"] = accounts[(index + 1) % len(accounts)].user_id
                if number % 5 == 4 and have:  # a dependency on an earlier task
                    body["depends_on"] = [have[-1]]
                    body["status"] = "todo"
                async with create_slots:
                    status, raw = await client.request(
                        "create",
                        "POST",
                        f"{gateway}/api/v1/tasks/",
                        json=body,
                        headers=account.headers,
                        expect=(201,),
                    )
                if status != 201:
                    raise RuntimeError(f"seeding a task failed: {status} {raw[:200]!r}")
                have.append(int(json.loads(raw)["id"]))
            # The seeded set: the account's first tasks; anything beyond, a mix left behind.
            account.task_ids = sorted(await ids_of(account))[: profile.tasks_per_account]

        await asyncio.gather(*(fill(i, a) for i, a in enumerate(accounts)))
    finally:
        await client.close()
    stack.accounts = accounts
    await reset_tasks(stack)
    total = sum(len(a.task_ids) for a in accounts)
    log(f"{stack.label}: seeded, {total} tasks owned ({time.perf_counter() - started:.1f} s)")


async def reset_tasks(stack: Stack) -> None:
    """Delete every task the scenarios created (not through the API: housekeeping, unmeasured),
    so each scenario and each stack sees the seeded data set, not one grown by earlier runs."""
    keep = [task_id for account in stack.accounts for task_id in account.task_ids]
    connection = await asyncpg.connect(stack.database_url)
    try:
        await connection.execute("DELETE FROM task WHERE id <> ALL($1::bigint[])", keep)
    finally:
        await connection.close()


# -- scenarios ------------------------------------------------------------------------------


@dataclass
class Outcome:
    stack: str
    scenario: str
    round: int
    seconds: float
    requests: int
    failures: int
    p50_ms: float
    p99_ms: float
    cpu_us: dict[str, float]  # per request, per process
    peak_rss_mb: dict[str, float]
    routes: dict[str, dict[str, float]]
    examples: list[str]
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def measured(
    stack: Stack,
    name: str,
    round_number: int,
    watched: list[Watched],
    warmup: float,
    load: Callable[[Recorder], Awaitable[None]],
    *,
    per_request: Callable[[Recorder], int] | None = None,
) -> Outcome:
    """Run `load` (it starts recording-off); after `warmup` seconds measure until it returns."""
    recorder = Recorder(recording=False)
    meter = Meter(watched)
    window: dict[str, float] = {}

    async def switch_on() -> None:
        await asyncio.sleep(warmup)
        recorder.recording = True
        meter.begin()
        window["start"] = time.perf_counter()

    switch = asyncio.create_task(switch_on())
    await load(recorder)
    await switch
    seconds = time.perf_counter() - window["start"]
    cpu, peak = meter.end()
    count = per_request(recorder) if per_request else recorder.count
    latencies = recorder.all_latencies()
    background = [v for k, vs in recorder.latencies.items() if k != "login" for v in vs]
    routes = {
        route: {
            "requests": len(values),
            "failures": recorder.failures.get(route, 0),
            "p50_ms": percentile(values, 0.50) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
        }
        for route, values in sorted(recorder.latencies.items())
    }
    outcome = Outcome(
        stack=stack.label,
        scenario=name,
        round=round_number,
        seconds=seconds,
        requests=recorder.count,
        failures=recorder.failed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        cpu_us={k: v * 1e6 / max(count, 1) for k, v in cpu.items()},
        peak_rss_mb=peak,
        routes=routes,
        examples=recorder.examples,
        extra={
            "login_per_s": len(recorder.latencies.get("login", [])) / seconds,
            "p99_without_login_ms": percentile(background, 0.99) * 1000,
            "reads_p50_ms": percentile(pooled(recorder, READS), 0.50) * 1000,
            "writes_p50_ms": percentile(pooled(recorder, WRITES), 0.50) * 1000,
        },
    )
    failed = f", {outcome.failures} FAILED e.g. {outcome.examples[:2]}" if outcome.failures else ""
    log(
        f"{stack.label:>8} r{round_number} {name:<22} {outcome.rps:8.1f} req/s  "
        f"p50 {outcome.p50_ms:6.1f}  p99 {outcome.p99_ms:7.1f} ms{failed}"
    )
    return outcome


READS = ("list", "filtered", "read")
WRITES = ("create", "update", "complete", "delete")


def pooled(recorder: Recorder, routes: tuple[str, ...]) -> list[float]:
    return [value for route in routes for value in recorder.latencies.get(route, [])]


def direct_targets(stack: Stack) -> Targets:
    return Targets(users=stack.url("user"), tasks=stack.url("task"), stats=stack.url("stats"))


Step = tuple[str, Callable[[], Awaitable[Outcome]]]


def round_steps(stack: Stack, profile: Profile, round_number: int, baseline: Watched) -> list[Step]:
    """The scenarios of one round on one stack, not started: the caller interleaves stacks."""
    steps: list[Step] = []
    rng = random.Random(round_number * 1000 + stack.offset)
    watched = [*stack.watched, baseline, Watched("loadgen", os.getpid())]
    gateway = Targets.gateway(stack.url("gateway"))
    accounts = stack.accounts

    async def closed(
        recorder: Recorder, targets: Targets, pick: Callable[[FrontendUser], Any], seconds: float
    ) -> None:
        client = Client(recorder, connections=profile.concurrency)
        try:
            users = users_of(client, targets, accounts, profile.concurrency, rng, pick)
            await closed_loop(users, profile.warmup + seconds)
        finally:
            await client.close()

    # 0. idle: what the suite burns with no request (health checks, relays, pollers), per second
    async def idle(recorder: Recorder) -> None:
        await asyncio.sleep(profile.warmup + 5)

    def step(name: str, load: Callable[[Recorder], Awaitable[None]]) -> None:
        async def run() -> Outcome:
            outcome = await measured(stack, name, round_number, watched, profile.warmup, load)
            await reset_tasks(stack)
            return outcome

        steps.append((name, run))

    async def idle_step() -> Outcome:
        outcome = await measured(
            stack,
            "idle (CPU us per second)",
            round_number,
            watched,
            profile.warmup,
            idle,
            per_request=lambda r: 1,
        )
        outcome.cpu_us = {k: v / outcome.seconds for k, v in outcome.cpu_us.items()}
        outcome.requests = 0
        return outcome

    steps.append(("idle", idle_step))

    # 1. the realistic mix at saturation, then at 200 users with think time
    step(
        "mix closed (gateway)", lambda r: closed(r, gateway, FrontendUser.mix, profile.mix_seconds)
    )

    async def open_mix(recorder: Recorder) -> None:
        client = Client(recorder, connections=profile.open_users)
        try:
            users = users_of(client, gateway, accounts, profile.open_users, rng, FrontendUser.mix)
            await open_loop(users, profile.warmup + profile.open_seconds, (1.0, 3.0), rng, recorder)
        finally:
            await client.close()

    step(f"mix open {profile.open_users}u (gateway)", open_mix)

    # 2. each hot route alone, through the gateway and straight to its service
    def route(name: str) -> Callable[[FrontendUser], Any]:
        return lambda user: user.action(name)

    for via, targets, names in (
        ("gateway", gateway, profile.gateway_routes),
        ("direct", direct_targets(stack), profile.direct_routes),
    ):
        for name in names:
            step(
                f"{name} ({via})",
                lambda r, t=targets, n=name: closed(r, t, route(n), profile.route_seconds),
            )

    # 3. the raw-asyncpg baselines: the same queries, same pool size, token verified
    def baseline(route: str, path: Callable[[random.Random, Account], str]) -> None:
        async def load(recorder: Recorder) -> None:
            client = Client(recorder, connections=profile.concurrency)

            def factory(index: int) -> Callable[[], Any]:
                account = accounts[index % len(accounts)]
                local = random.Random(index)

                def make() -> Any:
                    async def one(started: float | None) -> None:
                        await client.request(
                            route,
                            "GET",
                            f"{stack.baseline_url}{path(local, account)}",
                            headers=account.headers,
                            started=started,
                        )

                    return one

                return make

            try:
                workers = [factory(i) for i in range(profile.concurrency)]
                await closed_loop(workers, profile.warmup + profile.route_seconds)
            finally:
                await client.close()

        step(f"{route} (raw asyncpg)", load)

    baseline("read", lambda rng, account: f"/tasks/{rng.choice(account.task_ids)}")
    baseline("filtered", lambda rng, account: f"/tasks/?{rng.choice(FILTERS)}")

    # 4. logins while the mix runs at a fixed rate: first the mix alone, then with logins
    for with_logins in (False, True):

        async def login_load(recorder: Recorder, with_logins: bool = with_logins) -> None:
            mix_recorder = recorder
            client = Client(mix_recorder, connections=64)
            try:
                mixers = [
                    FrontendUser(client, gateway, a, random.Random(i)).mix()
                    for i, a in enumerate(accounts)
                ]
                cycle: Iterator[Any] = itertools.cycle(mixers)

                async def background(started: float | None) -> None:
                    await next(cycle)(started)

                seconds = profile.warmup + profile.login_seconds
                jobs = [fixed_rate(background, profile.login_background_rate, seconds, recorder)]
                if with_logins:
                    loggers = [
                        (lambda a=a: FrontendUser(client, gateway, a, rng).login)
                        for a in accounts[:4]
                    ]
                    jobs.append(closed_loop(loggers, seconds))
                await asyncio.gather(*jobs)
            finally:
                await client.close()

        name = "logins + mix (gateway)" if with_logins else "mix fixed rate (gateway)"
        step(name, login_load)
    return steps


# -- report ---------------------------------------------------------------------------------

COLUMNS = ["gateway", "user", "task", "stats", "postgres", "redis", "baseline", "loadgen"]
ISSUE_16_OPEN_USERS = 200


def median_by(outcomes: list[Outcome]) -> dict[tuple[str, str], dict[str, Any]]:
    grouped: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        grouped.setdefault((o.stack, o.scenario), []).append(o)
    summary = {}
    for key, group in grouped.items():
        rps = [o.rps for o in group]
        summary[key] = {
            "rps": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "failures": sum(o.failures for o in group),
            "p50_ms": statistics.median(o.p50_ms for o in group),
            "p99_ms": statistics.median(o.p99_ms for o in group),
            "cpu_us": {c: statistics.median(o.cpu_us.get(c, 0.0) for o in group) for c in COLUMNS},
            "peak_rss_mb": {
                c: max(o.peak_rss_mb.get(c, 0.0) for o in group)
                for c in ("gateway", "user", "task", "stats")
            },
            "extra": {k: statistics.median(o.extra[k] for o in group) for k in group[0].extra},
            "routes": {
                route: {
                    "p50_ms": statistics.median(
                        o.routes[route]["p50_ms"] for o in group if route in o.routes
                    )
                }
                for route in {r for o in group for r in o.routes}
            },
            "rounds": len(group),
        }
    return summary


def table(summary: dict[tuple[str, str], dict[str, Any]]) -> str:
    head = (
        f"{'stack':<9}{'scenario':<26}{'req/s':>8}{'(min-max)':>14}{'fail':>5}"
        f"{'p50ms':>7}{'p99ms':>8} | CPU us/req:"
        + "".join(f"{c[:6]:>7}" for c in COLUMNS)
        + " | peak RSS MB gw/us/ts/ss"
    )
    lines = [head, "-" * len(head)]
    for (stack, scenario), s in summary.items():
        cpu = "".join(
            f"{s['cpu_us'][c]:7.0f}" if s["cpu_us"][c] >= 0.5 else f"{'.':>7}" for c in COLUMNS
        )
        rss = "/".join(f"{s['peak_rss_mb'][c]:.0f}" for c in ("gateway", "user", "task", "stats"))
        spread = f"{s['rps_min']:.0f}-{s['rps_max']:.0f}"
        lines.append(
            f"{stack:<9}{scenario:<26}{s['rps']:8.1f}{spread:>14}{s['failures']:5d}"
            f"{s['p50_ms']:7.1f}{s['p99_ms']:8.1f} |            {cpu} | {rss}"
        )
    return "\n".join(lines)


def goals(
    summary: dict[tuple[str, str], dict[str, Any]], stacks: list[Stack], current: str
) -> list[dict[str, Any]]:
    """Issue 10's goals that this run measures: value, target, met."""

    def get(scenario: str, stack: str = current) -> dict[str, Any] | None:
        return summary.get((stack, scenario))

    results: list[dict[str, Any]] = []

    def add(
        goal: str, value: float | None, target: float, higher_is_better: bool, note: str
    ) -> None:
        met = None if value is None else (value >= target if higher_is_better else value <= target)
        results.append({"goal": goal, "value": value, "target": target, "met": met, "note": note})

    for route, key in (("read", "read_vs_asyncpg"), ("filtered", "filtered_vs_asyncpg")):
        direct = get(f"{route} (direct)")
        base = get(f"{route} (raw asyncpg)")
        if base and direct:
            add(
                f"task-service {route} / raw asyncpg (req/s)",
                direct["rps"] / base["rps"],
                ISSUE_10[key],
                True,
                f"CPU ratio (baseline us / task-service us): "
                f"{base['cpu_us']['baseline'] / max(direct['cpu_us']['task'], 1e-9):.2f}",
            )
    for route in ("create", "update", "complete"):
        direct = get(f"{route} (direct)")
        if direct:
            add(
                f"task-service CPU per {route} (ms)",
                direct["cpu_us"]["task"] / 1000,
                ISSUE_10["write_cpu_ms"],
                False,
                "direct to task-service, closed loop",
            )
    churn, create = get("churn (direct)"), get("create (direct)")
    if churn and create:
        # churn's figures are per request of a create + delete pair, two requests.
        add(
            "task-service CPU per delete (ms)",
            (2 * churn["cpu_us"]["task"] - create["cpu_us"]["task"]) / 1000,
            ISSUE_10["write_cpu_ms"],
            False,
            "create+delete pairs minus a create, direct",
        )
    for mix_name in ("mix closed (gateway)", f"mix open {ISSUE_16_OPEN_USERS}u (gateway)"):
        row = get(mix_name)
        if row and row["extra"]["reads_p50_ms"] and row["extra"]["writes_p50_ms"]:
            write_p50, read_p50 = row["extra"]["writes_p50_ms"], row["extra"]["reads_p50_ms"]
            add(
                f"{mix_name}: write p50 / read p50",
                write_p50 / read_p50,
                1.5,
                False,
                f"writes (create, update, complete, delete) p50 {write_p50:.1f} ms, "
                f"reads (list, filtered, read) p50 {read_p50:.1f} ms",
            )
    mix = get("mix closed (gateway)")
    if mix:
        add(
            "gateway CPU per proxied request, mix (us)",
            mix["cpu_us"]["gateway"],
            ISSUE_10["gateway_cpu_us"],
            False,
            "closed-loop mix at saturation",
        )
        for other in stacks:
            before = get("mix closed (gateway)", other.label)
            if other.label != current and before:
                add(
                    f"mix throughput now / {other.label} ({other.revision})",
                    mix["rps"] / before["rps"],
                    ISSUE_10["mix_speedup"],
                    True,
                    f"{mix['failures']} failures now, {before['failures']} before",
                )
                add(
                    f"mix suite CPU per request, {other.label} / now",
                    suite_cpu(before) / suite_cpu(mix),
                    ISSUE_10["mix_speedup"],
                    True,
                    f"{suite_cpu(before):.0f} us before, {suite_cpu(mix):.0f} us now "
                    "(all services + PostgreSQL + Redis; steadier than req/s here)",
                )
    open_mix = get("mix open 200u (gateway)")
    if open_mix:
        add(
            "mix at 200 users, 1-3 s think: p99 (ms)",
            open_mix["p99_ms"],
            ISSUE_10["open_p99_ms"],
            False,
            f"{open_mix['failures']} failures",
        )
    peak = max(
        (
            s["peak_rss_mb"][c]
            for (st, _), s in summary.items()
            if st == current
            for c in ("gateway", "user", "task", "stats")
        ),
        default=None,
    )
    alone, loaded = get("mix fixed rate (gateway)"), get("logins + mix (gateway)")
    if alone and loaded:
        results.append(
            {
                "goal": "logins/s beside the mix (info)",
                "value": loaded["extra"]["login_per_s"],
                "target": None,
                "met": None,
                "note": f"mix p99 {alone['extra']['p99_without_login_ms']:.0f} ms alone, "
                f"{loaded['extra']['p99_without_login_ms']:.0f} ms with 4 login loops",
            }
        )
    add("largest service RSS under load (MB)", peak, ISSUE_10["rss_mb"], False, "sampled VmRSS")
    for stack in stacks:
        if stack.label == current:
            add(
                "launcher healthy (s)",
                stack.startup_seconds,
                ISSUE_10["startup_s"],
                False,
                "devstack start to every /health 200, warm data directory, busy machine",
            )
    return results


SUITE = ("gateway", "user", "task", "stats", "postgres", "redis")


def suite_cpu(summary_row: dict[str, Any]) -> float:
    return float(sum(summary_row["cpu_us"][c] for c in SUITE))


def chart(summary: dict[tuple[str, str], dict[str, Any]], path: Path, labels: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(sc for (_, sc) in summary))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 10))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        xs, ys, lo, hi = [], [], [], []
        for j, sc in enumerate(scenarios):
            s = summary.get((label, sc))
            if s:
                xs.append(j + i * width)
                ys.append(s["rps"])
                lo.append(s["rps"] - s["rps_min"])
                hi.append(s["rps_max"] - s["rps"])
        top.bar(xs, ys, width, yerr=[lo, hi], label=label, capsize=2)
    top.set_xticks([j + width * (len(labels) - 1) / 2 for j in range(len(scenarios))])
    top.set_xticklabels(scenarios, rotation=40, ha="right", fontsize=8)
    top.set_ylabel("req/s (median, min-max of rounds)")
    top.set_yscale("log")
    top.legend()
    top.set_title("TaskFlow suite benchmark (2 shared cores, loopback)")
    mixes = [sc for sc in scenarios if sc.startswith("mix closed")] + [
        sc for sc in scenarios if sc.endswith("(direct)") or "asyncpg" in sc
    ]
    procs = ["gateway", "user", "task", "stats", "postgres", "redis", "baseline"]
    names, bottoms = [], []
    for label in labels:
        for sc in mixes:
            if (label, sc) in summary:
                names.append(f"{label}: {sc}")
                bottoms.append(summary[(label, sc)]["cpu_us"])
    left = [0.0] * len(names)
    for proc in procs:
        values = [b[proc] for b in bottoms]
        bottom.barh(names, values, left=left, label=proc)
        left = [a + b for a, b in zip(left, values, strict=True)]
    bottom.set_xlabel("CPU microseconds per request, by process")
    bottom.tick_params(axis="y", labelsize=7)
    bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main -----------------------------------------------------------------------------------


async def bench(stacks: list[Stack], profile: Profile, rounds: int) -> list[Outcome]:
    baselines = [Baseline(s) for s in stacks]
    outcomes: list[Outcome] = []
    try:
        watched = []
        for stack, baseline in zip(stacks, baselines, strict=True):
            await seed(stack, profile)
            watched.append(baseline.start())
        for round_number in range(1, rounds + 1):
            # Scenario by scenario, each on every stack in turn (the first alternating), so a
            # before/after pair is measured minutes apart at most on this shared machine.
            plans = [
                round_steps(stack, profile, round_number, baseline_process)
                for stack, baseline_process in zip(stacks, watched, strict=True)
            ]
            for index in range(len(plans[0])):
                order = plans if (round_number + index) % 2 else plans[::-1]
                for plan in order:
                    outcomes.append(await plan[index][1]())
    finally:
        for baseline in baselines:
            baseline.stop()
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="full mode (quick by default)")
    parser.add_argument("--compare", metavar="REV", help="also run REV from a git worktree")
    parser.add_argument("--rounds", type=int, help="rounds per stack (quick 1, full 3)")
    parser.add_argument("--fresh", action="store_true", help="new data directories (reseed)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args()
    profile = FULL if args.full else QUICK
    rounds = args.rounds or profile.rounds
    started = time.monotonic()
    head = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.strip()
    )
    current = "now"
    revision = head + ("+dirty" if dirty else "")
    stacks = [Stack(current, ROOT, Path(sys.executable), 10000 + PORT_BASE, revision)]
    if args.compare:
        path, python, sha = worktree(args.compare)
        stacks.append(Stack("before", path, python, 11000 + PORT_BASE, sha))
    if args.fresh:
        for stack in stacks:
            shutil.rmtree(stack.data, ignore_errors=True)
    load_at_start = os.getloadavg()
    try:
        for stack in stacks:
            stack.start()
        try:
            import uvloop

            runner: Callable[[Any], Any] = uvloop.run
        except ImportError:
            runner = asyncio.run
        outcomes = runner(bench(stacks, profile, rounds))
    except (aiohttp.ClientError, RuntimeError) as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        for stack in stacks:
            with contextlib.suppress(Exception):
                stack.stop()

    summary = median_by(outcomes)
    print()
    print(table(summary))
    print()
    goal_rows = goals(summary, stacks, current)
    for row in goal_rows:
        state = {True: "met", False: "MISSED", None: "info"}[row["met"]]
        value = "-" if row["value"] is None else f"{row['value']:.3g}"
        target = "" if row["target"] is None else f"(target {row['target']:g})"
        print(f"  {state:<7}{row['goal']:<52}{value:>9}  {target}  {row['note']}")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%MZ")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{stamp}.json"
    png_path = args.out / f"{stamp}.png"
    labels = [s.label for s in stacks]
    chart(summary, png_path, labels)
    document = {
        "when": stamp,
        "mode": "full" if args.full else "quick",
        "rounds": rounds,
        "profile": profile.__dict__,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
        "stacks": [
            {
                "label": s.label,
                "revision": s.revision,
                "startup_seconds": s.startup_seconds,
                "tasks_owned": sum(len(a.task_ids) for a in s.accounts),
            }
            for s in stacks
        ],
        "summary": [{"stack": k[0], "scenario": k[1], **v} for k, v in summary.items()],
        "goals": goal_rows,
        "outcomes": [o.__dict__ for o in outcomes],
        "seconds": time.monotonic() - started,
    }
    json_path.write_text(json.dumps(document, indent=1, default=str))
    print(f"\nwrote {json_path} and {png_path} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
