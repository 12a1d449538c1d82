"""Size benchmark (`make bench-size`): task-service's list, filter, tag, search, sort and page
queries and stats-service's `/stats/` with a million tasks for one user and ten thousand for
another in the same task database (issue 16).

Two task databases on one PostgreSQL server (the shared one at 127.0.0.1:5432 by default: it
has pg_trgm and btree_gin, which the embedded PostgreSQL of `make run` lacks):
  * `<name>_alone`: the small user's 10,000 tasks only;
  * `<name>_shared`: the same 10,000 tasks plus the big user's 1,000,000.
Rows are written by PostgreSQL itself (generate_series: task-service/tests/bulk_tasks.py), then
ANALYZEd; the databases are kept for the next run (`--fresh` rebuilds them). task-service runs
as a uvicorn process on each database (migrations applied at start, so a new index is built on
the loaded table), stats-service in front of the shared one, both on Redis under a throwaway
prefix. Tokens are real (signed with the processes' secret); every request goes straight to the
service, one at a time, and a query kind's time is the median of `--repeat` requests after two
warm-up ones. The three (small alone, small beside big, big) take turns request by request, so
a busy moment of a shared machine falls on all three alike and the ratios hold.

It prints, per query kind: small user alone, small user beside the big one, big user (ms), the
ratios big/small and small-shared/small-alone, and writes bench/results/size-<timestamp>.json.
Works against older revisions too: kinds that need `next_cursor` are skipped where the list
response has none.

Issue 19: the shared database also holds a project of `--project` tasks (100,000) with a
member who owns nothing; per sort, the member's page of that project (`?project_id=`) and
their whole list are timed beside the small user's personal list (same sort, same page size).

`--compare REV` runs REV's services too (a git worktree, as `suite_bench.py --compare`), on
databases of their own (`<name>_before_*`, built by REV's migrations) and their own Redis
prefix; every target of both revisions takes turns request by request, so "before" and "now"
come from one invocation.

Usage: python bench/size_bench.py [--big N] [--small N] [--project N] [--repeat N]
                                  [--compare REV] [--fresh] [--server URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from taskflow_devstack.embedded import wait_for_port
from taskflow_devstack.processes import uvicorn_command
from taskflow_kit.events import epoch_key
from taskflow_kit.revocation import REVOKING_PRODUCER
from taskflow_kit.tokens import TokenConfig, issue_token

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "task-service" / "tests"))

from bulk_tasks import (  # noqa: E402
    BULK_INSERT,
    COMMON_TAG,
    COMMON_TERM,
    RARE_TAG,
    RARE_TERM,
    bulk_insert_parameters,
)

BIG_USER, SMALL_USER = 1, 2
# Issue 19: a board of `--project` tasks (owned by BOARD_OWNER) that MEMBER belongs to.
BOARD_OWNER, MEMBER = 3, 4
BOARD_NAME = "size-bench board"
PORT_OFFSET = int(os.environ.get("TASKFLOW_PORT_OFFSET", "0"))
ALONE_PORT, SHARED_PORT, STATS_PORT = 8020, 8021, 8022  # plus TASKFLOW_PORT_OFFSET

# name -> query string of GET /api/v1/tasks/ (the cursor kinds are built from a response)
LIST_KINDS: dict[str, str] = {
    "list first page": "limit=20",
    "list skip=5000": "limit=20&skip=5000",
    "status=done": "status=done&limit=20",
    "priority=urgent,high": "priority=urgent&priority=high&limit=20",
    "overdue": "overdue=true&limit=20",
    f"tag {COMMON_TAG} (1/3)": f"tags={COMMON_TAG}&limit=20",
    f"tag {RARE_TAG} (1/1000)": f"tags={RARE_TAG}&limit=20",
    f"search {COMMON_TERM} (1/16)": f"search={COMMON_TERM}&limit=20",
    f"search {RARE_TERM} (1/1000)": f"search={RARE_TERM}&limit=20",
    "sort priority desc": "sort_by=priority&sort_order=desc&limit=20",
    "sort due_date asc": "sort_by=due_date&sort_order=asc&limit=20",
    "sort due_date desc": "sort_by=due_date&sort_order=desc&limit=20",
    "sort title asc": "sort_by=title&sort_order=asc&limit=20",
    "sort status asc": "sort_by=status&sort_order=asc&limit=20",
    "sort updated_at asc": "sort_by=updated_at&sort_order=asc&limit=20",
}
# Cursor kinds: the page after `skip=4980` (depth 5000) reached through its next_cursor.
CURSOR_KINDS: dict[str, str] = {
    "cursor at 5000": "limit=20&skip=4980",
    "cursor at 5000, due_date desc": "sort_by=due_date&sort_order=desc&limit=20&skip=4980",
    "cursor at 5000, priority asc": "sort_by=priority&sort_order=asc&limit=20&skip=4980",
}


def log(message: str) -> None:
    print(f"[size-bench] {message}", flush=True)


@dataclass
class Service:
    label: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def database_url(server: str, name: str) -> str:
    return server.rsplit("/", 1)[0] + f"/{name}"


async def ensure_database(server: str, name: str, *, fresh: bool) -> bool:
    """Create the database (dropped first with `fresh`); True when it was created."""
    engine = create_async_engine(
        database_url(server, "postgres").replace("postgresql://", "postgresql+asyncpg://"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with engine.connect() as connection:
            if fresh:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
            return not exists
    finally:
        await engine.dispose()


async def load(url: str, owners: dict[int, int]) -> None:
    """Bulk-load each owner's tasks unless they are there already, then ANALYZE."""
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        for owner, count in owners.items():
            async with engine.begin() as connection:
                have = await connection.scalar(
                    text("SELECT count(*) FROM task WHERE owner_id = :owner"), {"owner": owner}
                )
                if have == count:
                    continue
                await connection.execute(
                    text("DELETE FROM task WHERE owner_id = :owner"), {"owner": owner}
                )
                log(f"loading {count:,} tasks for user {owner} ...")
                started = time.monotonic()
                await connection.execute(
                    text(BULK_INSERT),
                    bulk_insert_parameters(owner=owner, count=count, assignee_base=100),
                )
                log(f"  done in {time.monotonic() - started:.0f} s")
        async with engine.connect() as connection:
            await connection.execute(text("COMMIT"))
            await connection.execute(text("VACUUM ANALYZE task"))
    finally:
        await engine.dispose()


async def load_board(url: str, count: int) -> int:
    """A project of `count` tasks (bulk-loaded like the users' tasks, then moved into it)
    with MEMBER a member; its id. Kept for the next run like the tasks."""
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.begin() as connection:
            project = await connection.scalar(
                text("SELECT id FROM project WHERE name = :name"), {"name": BOARD_NAME}
            )
            have = 0
            if project is not None:
                have = await connection.scalar(
                    text("SELECT count(*) FROM task WHERE project_id = :project"),
                    {"project": project},
                )
            if project is not None and have == count:
                return int(project)
            log(f"loading a board of {count:,} tasks ...")
            if project is not None:
                await connection.execute(
                    text("DELETE FROM project WHERE id = :project"), {"project": project}
                )
            await connection.execute(
                text("DELETE FROM task WHERE owner_id = :owner"), {"owner": BOARD_OWNER}
            )
            project = await connection.scalar(
                text(
                    "INSERT INTO project (name, owner_id, created_at, updated_at, version) "
                    "VALUES (:name, :owner, now(), now(), 1) RETURNING id"
                ),
                {"name": BOARD_NAME, "owner": BOARD_OWNER},
            )
            await connection.execute(
                text(
                    "INSERT INTO project_member (project_id, user_id, role, added_at) "
                    "VALUES (:project, :owner, 'owner', now()), "
                    "(:project, :member, 'member', now())"
                ),
                {"project": project, "owner": BOARD_OWNER, "member": MEMBER},
            )
            await connection.execute(
                text(BULK_INSERT),
                bulk_insert_parameters(owner=BOARD_OWNER, count=count, assignee_base=100),
            )
            # A project's assignee must be a member: the bulk rows' assignees are cleared.
            await connection.execute(
                text(
                    "UPDATE task SET project_id = :project, assignee_id = NULL "
                    "WHERE owner_id = :owner"
                ),
                {"project": project, "owner": BOARD_OWNER},
            )
        async with engine.connect() as connection:
            await connection.execute(text("COMMIT"))
            await connection.execute(text("VACUUM ANALYZE task"))
            await connection.execute(text("ANALYZE project_member"))
        return int(project)
    finally:
        await engine.dispose()


@contextmanager
def running(services: list[Service]) -> Iterator[None]:
    try:
        for service in services:
            # Migrations may build indexes on a million rows at start.
            wait_for_port("127.0.0.1", service.port, seconds=900)
        yield
    finally:
        for service in services:
            service.process.terminate()
        for service in services:
            try:
                service.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                service.process.kill()


@dataclass(frozen=True)
class Target:
    """Who asks whom: a user's token and the task-service they ask."""

    label: str
    base: str
    token: str


async def get_ms(client: httpx.AsyncClient, url: str, token: str) -> float:
    """Milliseconds of one GET (which must be a 200)."""
    started = time.perf_counter()
    response = await client.get(url, headers={"Authorization": f"Bearer {token}"})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
    return elapsed


async def cursor_query(client: httpx.AsyncClient, target: Target, query: str) -> str | None:
    """The query string of the page after `query` (its next_cursor), None without cursors."""
    headers = {"Authorization": f"Bearer {target.token}"}
    body = (await client.get(f"{target.base}/api/v1/tasks/?{query}", headers=headers)).json()
    cursor = body.get("next_cursor")
    if cursor is None:
        return None
    sort = "&".join(part for part in query.split("&") if not part.startswith("skip="))
    return f"{sort}&cursor={cursor}"


async def list_times(
    client: httpx.AsyncClient, targets: list[Target], repeat: int
) -> dict[str, dict[str, float | None]]:
    """Median ms per query kind and target. The targets take turns request by request (after
    two warm-up rounds), so a busy moment of the shared machine falls on all of them alike."""
    times: dict[str, dict[str, float | None]] = {target.label: {} for target in targets}
    kinds: list[tuple[str, dict[str, str | None]]] = [
        (name, {target.label: query for target in targets}) for name, query in LIST_KINDS.items()
    ]
    for name, query in CURSOR_KINDS.items():
        kinds.append(
            (name, {target.label: await cursor_query(client, target, query) for target in targets})
        )
    for name, queries in kinds:
        samples: dict[str, list[float]] = {target.label: [] for target in targets}
        for attempt in range(repeat + 2):
            for target in targets:
                asked = queries[target.label]
                if asked is None:
                    continue
                url = f"{target.base}/api/v1/tasks/?{asked}"
                elapsed = await get_ms(client, url, target.token)
                if attempt >= 2:
                    samples[target.label].append(elapsed)
        for target in targets:
            found = samples[target.label]
            times[target.label][name] = statistics.median(found) if found else None
    return times


# Issue 19: a member's page of one project (and their whole list, which holds the board)
# against a personal list of the same sort and page size.
BOARD_SORTS: dict[str, str] = {
    "created_at desc": "limit=20",
    "due_date asc": "sort_by=due_date&sort_order=asc&limit=20",
    "priority desc": "sort_by=priority&sort_order=desc&limit=20",
    "title asc": "sort_by=title&sort_order=asc&limit=20",
    "cursor at 5000": "limit=20&skip=4980",
}


async def board_times(
    client: httpx.AsyncClient, personal: Target, member: Target, project: int, repeat: int
) -> dict[str, dict[str, float | None]]:
    """Median ms of a personal list, the member's project list and the member's whole list,
    per sort, the three taking turns request by request."""
    times: dict[str, dict[str, float | None]] = {}
    for name, query in BOARD_SORTS.items():
        queries = {
            "personal": (personal, query),
            "project": (member, f"{query}&project_id={project}"),
            "member all": (member, query),
        }
        if "skip=" in query:
            for label, (target, base) in list(queries.items()):
                follow = await cursor_query(client, target, base)
                queries[label] = (target, follow or base)
        samples: dict[str, list[float]] = {label: [] for label in queries}
        for attempt in range(repeat + 2):
            for label, (target, found) in queries.items():
                elapsed = await get_ms(client, f"{target.base}/api/v1/tasks/?{found}", target.token)
                if attempt >= 2:
                    samples[label].append(elapsed)
        times[name] = {label: statistics.median(found) for label, found in samples.items()}
    return times


async def stats_times(
    client: httpx.AsyncClient, stats: str, token: str, redis_url: str, prefix: str, repeat: int
) -> dict[str, float]:
    """`/stats/` cold (stats-service's cache emptied before each request) and warm."""
    redis = aioredis.from_url(redis_url)
    headers = {"Authorization": f"Bearer {token}"}
    cold = []
    try:
        for _ in range(max(3, repeat // 3)):
            keys = [key async for key in redis.scan_iter(match=f"{prefix}stats:*")]
            if keys:
                await redis.delete(*keys)
            started = time.perf_counter()
            response = await client.get(f"{stats}/api/v1/stats/", headers=headers)
            cold.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    finally:
        await redis.aclose()
    warm = [await get_ms(client, f"{stats}/api/v1/stats/", token) for _ in range(repeat + 2)]
    return {"stats cold": statistics.median(cold), "stats warm": statistics.median(warm[2:])}


async def mark_revocations_complete(redis_url: str, prefix: str) -> None:
    """No user-service runs here: set the epoch key its relay would, so the services' access
    checks do not wait for a complete revocation map (taskflow_kit.revocation)."""
    redis = aioredis.from_url(redis_url)
    try:
        await redis.set(epoch_key(prefix, REVOKING_PRODUCER), "size-bench")
    finally:
        await redis.aclose()


async def forget_prefix(redis_url: str, prefix: str) -> None:
    """Delete this run's keys (stats cache, streams) from the shared Redis."""
    redis = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return "-"
    return f"{numerator / denominator:.2f}"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@dataclass
class Stack:
    """One revision's services on its own two databases (and its own Redis prefix)."""

    label: str
    python: str
    cwd: Path
    alone: str
    shared: str
    prefix: str
    ports: tuple[int, int, int]  # task alone, task shared, stats

    def services(self, server: str, env: dict[str, str]) -> list[Service]:
        env = {**env, "REDIS_PREFIX": self.prefix}
        alone_port, shared_port, stats_port = self.ports
        return [
            self.start("task-alone", "task_service.main:create_app", alone_port,
                       {**env, "TASK_SERVICE_DATABASE_URL": database_url(server, self.alone)}),
            self.start("task-shared", "task_service.main:create_app", shared_port,
                       {**env, "TASK_SERVICE_DATABASE_URL": database_url(server, self.shared)}),
            self.start("stats", "stats_service.main:create_app", stats_port,
                       {**env, "TASK_SERVICE_URL": f"http://127.0.0.1:{shared_port}"}),
        ]  # fmt: skip

    def start(self, label: str, app: str, port: int, env: dict[str, str]) -> Service:
        command = uvicorn_command(
            app, port=port, factory=True, access_log=False, log_level="warning"
        )
        command[0] = self.python
        return Service(label, port, subprocess.Popen(command, env=env, cwd=self.cwd))

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"


def compare_stack(revision: str, name: str) -> Stack:
    """REV's services from a git worktree (suite_bench's), on databases of their own."""
    sys.path.insert(0, str(ROOT / "bench"))
    from suite_bench import worktree

    path, python, sha = worktree(revision)
    log(f"comparing with {sha} (worktree {path})")
    return Stack(
        f"before {sha}",
        str(python),
        path,
        f"{name}_before_alone",
        f"{name}_before_shared",
        f"sizebench:{uuid.uuid4().hex[:8]}:",
        tuple(port + 10 for port in (ALONE_PORT, SHARED_PORT, STATS_PORT)),  # type: ignore[arg-type]
    )


async def measure(
    stack: Stack, args: argparse.Namespace, token: Any, client: httpx.AsyncClient
) -> tuple[list[Target], int]:
    """Load the stack's databases (schema from its own migrations) and name its targets."""
    alone_url, shared_url = (database_url(args.server, n) for n in (stack.alone, stack.shared))
    await load(alone_url, {SMALL_USER: args.small})
    await load(shared_url, {SMALL_USER: args.small, BIG_USER: args.big})
    project = await load_board(shared_url, args.project)
    return [
        Target(f"{stack.label}: small alone", stack.url(0), token(SMALL_USER)),
        Target(f"{stack.label}: small shared", stack.url(1), token(SMALL_USER)),
        Target(f"{stack.label}: big", stack.url(1), token(BIG_USER)),
    ], project


def print_table(
    label: str, small_alone: dict[str, Any], small: dict[str, Any], big: dict[str, Any]
) -> None:
    width = max(len(name) for name in big)
    print(f"\n{label}")
    print(
        f"{'query (ms, median)':<{width}}  {'small alone':>11}  {'small shared':>12}  "
        f"{'big':>8}  {'big/small':>9}  {'shared/alone':>12}"
    )
    for name in big:
        print(
            f"{name:<{width}}  {fmt(small_alone.get(name)):>11}  {fmt(small.get(name)):>12}  "
            f"{fmt(big[name]):>8}  {ratio(big[name], small.get(name)):>9}  "
            f"{ratio(small.get(name), small_alone.get(name)):>12}"
        )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--project", type=int, default=100_000, help="tasks on the board")
    parser.add_argument("--fresh", action="store_true", help="rebuild the databases")
    parser.add_argument("--name", default="taskflow_size_bench")
    parser.add_argument(
        "--compare", metavar="REV", help="also run REV (from a git worktree), interleaved"
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("SIZE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    args = parser.parse_args()

    stacks = [
        Stack(
            "now",
            sys.executable,
            ROOT,
            f"{args.name}_alone",
            f"{args.name}_shared",
            f"sizebench:{uuid.uuid4().hex[:8]}:",
            tuple(port + PORT_OFFSET for port in (ALONE_PORT, SHARED_PORT, STATS_PORT)),  # type: ignore[arg-type]
        )
    ]
    if args.compare:
        before = compare_stack(args.compare, args.name)
        before.ports = tuple(port + PORT_OFFSET for port in before.ports)  # type: ignore[assignment]
        stacks.append(before)
    for stack in stacks:
        for name in (stack.alone, stack.shared):
            await ensure_database(args.server, name, fresh=args.fresh)
        await mark_revocations_complete(args.redis, stack.prefix)
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "JWT_SECRET": secret,
        "REDIS_URL": args.redis,
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
        "MIGRATE_ON_START": "true",
    }
    env.pop("VIRTUAL_ENV", None)
    # Schema first (migrations at start), then data, then the measured processes.
    services = [service for stack in stacks for service in stack.services(args.server, env)]
    config = TokenConfig(secret=secret, issuer="taskflow", audience="taskflow")
    now = datetime.now(UTC)

    def token(user: int) -> str:
        return issue_token(
            config,
            subject=str(user),
            token_type="access",
            ttl=timedelta(hours=2),
            claims={"username": f"user{user}", "is_superuser": False},
            now=now,
        )

    results: dict[str, Any] = {}
    with running(services):
        async with httpx.AsyncClient(timeout=120) as client:
            targets: list[Target] = []
            projects: dict[str, int] = {}
            for stack in stacks:
                found, projects[stack.label] = await measure(stack, args, token, client)
                targets += found
            log("timing the small user alone, beside the big one, and the big user ...")
            times = await list_times(client, targets, args.repeat)
            log("timing a member's project list against a personal one ...")
            boards = {}
            for stack in stacks:
                boards[stack.label] = await board_times(
                    client,
                    Target("personal", stack.url(1), token(SMALL_USER)),
                    Target("member", stack.url(1), token(MEMBER)),
                    projects[stack.label],
                    args.repeat,
                )
            log("timing /stats/ ...")
            for stack in stacks:
                small = times[f"{stack.label}: small shared"]
                big = times[f"{stack.label}: big"]
                for user, row in ((SMALL_USER, small), (BIG_USER, big)):
                    row.update(
                        await stats_times(
                            client, stack.url(2), token(user), args.redis, stack.prefix,
                            args.repeat,
                        )
                    )  # fmt: skip
    for stack in stacks:
        await forget_prefix(args.redis, stack.prefix)

    for stack in stacks:
        small_alone, small, big = (
            times[f"{stack.label}: {who}"] for who in ("small alone", "small shared", "big")
        )
        print_table(stack.label, small_alone, small, big)
        board = boards[stack.label]
        print(f"\n{stack.label}: board of {args.project:,} tasks (ms, median)")
        header = f"{'personal':>8}  {'project':>8}  {'member all':>10}  {'project/personal':>16}"
        print(f"{'sort':<16}  {header}")
        for name, row in board.items():
            print(
                f"{name:<16}  {fmt(row['personal']):>8}  {fmt(row['project']):>8}  "
                f"{fmt(row['member all']):>10}  {ratio(row['project'], row['personal']):>16}"
            )
        results[stack.label] = {
            "small_alone_ms": small_alone,
            "small_shared_ms": small,
            "big_ms": big,
            "board_ms": board,
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "label": args.label,
        "revision": revision,
        "compare": args.compare,
        "big": args.big,
        "small": args.small,
        "project": args.project,
        "repeat": args.repeat,
        "load_average_at_end": os.getloadavg(),
        "stacks": results,
    }
    path = RESULTS / f"size-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"results in {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
