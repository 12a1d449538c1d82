"""Where task-service's CPU goes on its hot routes: py-spy on the real process under load.

Starts the benchmark's stack (bench/suite_bench.py: the devstack launcher, own data directory and
ports, seeded through the public API), drives one route straight to task-service in a closed
loop, and samples the task-service process with py-spy (on-CPU samples only, no idle) for the
same window. Writes the collapsed stacks and a flame graph under bench/results/profiles/, and
prints the CPU share of each layer (inclusive, ranked) and the functions with the most own time.

Usage: python bench/profile_task_service.py [--routes read,list] [--seconds 20] [--rate 250]
       python bench/profile_task_service.py --report FILE.txt   (re-read a collapsed profile)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen.core import Client, Recorder, closed_loop
from loadgen.frontend import users_of
from suite_bench import QUICK, ROOT, Stack, direct_targets, log, seed

OUT = ROOT / "bench" / "results" / "profiles"
ROUTES = {"read": "read", "list": "list", "filtered": "filtered", "create": "create"}

# Layers, matched on "function (file)" frames; a sample counts once per layer (inclusive).
# Order is the order of the report, not a priority: layers nest (a query runs inside FastAPI).
LAYERS: list[tuple[str, Callable[[str], bool]]] = [
    ("uvicorn + httptools (HTTP parsing, ASGI cycle)", lambda f: "uvicorn/protocols" in f),
    ("Starlette/kit middleware stack", lambda f: "middleware" in f and "starlette" in f),
    (
        "kit middlewares (request id, access log, metrics, errors)",
        lambda f: (
            "taskflow_kit" in f
            and any(m in f for m in ("middleware", "request_id", "logs.py", "metrics", "errors.py"))
        ),
    ),
    ("FastAPI dependency resolution (solve_dependencies)", lambda f: "solve_dependencies" in f),
    (
        "FastAPI request validation + response serialisation",
        lambda f: (
            "fastapi/routing.py" in f
            and ("serialize_response" in f or "_prepare_response_content" in f)
        ),
    ),
    (
        "token check (JWT decode)",
        lambda f: ("jwt" in f.lower() and "api_jwt" in f) or "decode_token" in f,
    ),
    (
        "SQLAlchemy statement construction (select/where)",
        lambda f: (
            "sqlalchemy/sql/" in f
            and "compiler.py" not in f
            and (
                "selectable.py" in f
                or "elements.py" in f
                or "_selectable_constructors" in f
                or "operators.py" in f
            )
        ),
    ),
    (
        "SQLAlchemy compilation / cache key",
        lambda f: "sqlalchemy/sql/compiler.py" in f or "cache_key.py" in f,
    ),
    ("SQLAlchemy ORM execute + row loading", lambda f: "sqlalchemy/orm/" in f),
    ("SQLAlchemy pool checkout/return (incl. pre-ping)", lambda f: "sqlalchemy/pool/" in f),
    ("pre-ping (do_ping)", lambda f: "do_ping" in f or "_do_ping_w_event" in f),
    ("asyncpg driver + adapter", lambda f: "asyncpg" in f),
    (
        "session begin/commit/close",
        lambda f: (
            "sqlalchemy/orm/session.py" in f
            and any(m in f for m in ("commit", "close", "_connection_for_bind", "begin"))
        ),
    ),
    ("pydantic (validate/serialise)", lambda f: "pydantic" in f),
    ("structlog / logging", lambda f: "structlog" in f or "logging/__init__" in f),
    ("task_service code (own frames)", lambda f: "task_service/" in f),
]


def collapsed(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def report(path: Path, top: int = 25) -> str:
    stacks = collapsed(path)
    total = sum(count for _, count in stacks)
    if not total:
        return f"{path}: no samples"
    layer_counts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        for name, match in LAYERS:
            if any(match(frame) for frame in frames):
                layer_counts[name] += count
        own[frames[-1]] += count
    lines = [f"{path.name}: {total} samples", "", "CPU share by layer (inclusive, ranked):"]
    for name, count in layer_counts.most_common():
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    lines += ["", f"top {top} functions by own time:"]
    for frame, count in own.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame[:150]}")
    return "\n".join(lines)


async def drive(stack: Stack, route: str, seconds: float, concurrency: int) -> Recorder:
    recorder = Recorder()
    client = Client(recorder, connections=concurrency)
    try:
        users = users_of(
            client,
            direct_targets(stack),
            stack.accounts,
            concurrency,
            random.Random(7),
            lambda user, name=route: user.action(name),
        )
        await closed_loop(users, seconds)
    finally:
        await client.close()
    return recorder


async def profile(stack: Stack, routes: list[str], seconds: float, rate: int) -> list[Path]:
    await seed(stack, QUICK)
    task_pid = next(w.pid for w in stack.watched if w.name == "task")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%MZ")
    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    for route in routes:
        await drive(stack, ROUTES[route], 2, 16)  # warm-up
        # Collapsed stacks ("frame;frame;... count"): the report below reads them, and
        # speedscope or flamegraph.pl draw them.
        output = OUT / f"{stamp}-{route}.txt"
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(task_pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started = time.perf_counter()
        recorder = await drive(stack, ROUTES[route], seconds, 16)
        rps = recorder.count / (time.perf_counter() - started)
        spy.wait(60)
        log(f"{route}: {rps:.0f} req/s under py-spy, {recorder.failed} failures")
        written.append(output)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", default="read,list")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--report", type=Path, help="only print the report of a profile")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return 0
    head = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    stack = Stack("now", ROOT, Path(sys.executable), 10000, head)
    routes = [r for r in args.routes.split(",") if r]
    try:
        stack.start()
        written: list[Path] = asyncio.run(profile(stack, routes, args.seconds, args.rate))
    finally:
        stack.stop()
    for path in written:
        print()
        print(report(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
