"""Where task-service's CPU goes on its hot routes: py-spy on the real process under load.

Starts the benchmark's stack (bench/suite_bench.py: the devstack launcher, own data directory and
ports, seeded through the public API), drives one route straight to task-service in a closed
loop, and samples the task-service process with py-spy (on-CPU samples only, no idle) for the
same window. Writes the collapsed stacks and a flame graph under bench/results/profiles/, and
prints the CPU share of each layer (inclusive, ranked) and the functions with the most own time.

Usage: python bench/profile_task_service.py [--routes read,list] [--seconds 20] [--rate 250]
       python bench/profile_task_service.py --report FILE.txt.gz   (re-read a saved profile)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen.core import Client, Recorder, closed_loop
from loadgen.frontend import users_of
from suite_bench import QUICK, ROOT, Stack, direct_targets, log, seed

OUT = ROOT / "bench" / "results" / "profiles"
ROUTES = {"read": "read", "list": "list", "filtered": "filtered", "create": "create"}

# Where a sample's CPU goes: the innermost frame whose file matches a layer (leaf first), so
# the layers partition the samples (they add up to 100%).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("asyncpg driver (protocol, codecs)", ("asyncpg/",)),
    ("SQLAlchemy asyncpg adapter", ("sqlalchemy/dialects/postgresql/asyncpg.py",)),
    ("SQLAlchemy compile + cache key", ("sqlalchemy/sql/compiler.py", "sqlalchemy/sql/cache_key")),
    ("SQLAlchemy statement construction", ("sqlalchemy/sql/",)),
    ("SQLAlchemy engine (execution context, results)", ("sqlalchemy/engine/",)),
    ("SQLAlchemy ORM (session, loading)", ("sqlalchemy/orm/",)),
    ("SQLAlchemy pool (checkout, pre-ping, return)", ("sqlalchemy/pool/",)),
    ("SQLAlchemy other (util, async bridge)", ("sqlalchemy/",)),
    ("pydantic (validation, serialisation)", ("pydantic",)),
    ("JWT decode", ("jwt/",)),
    ("structlog / logging", ("structlog/", "logging/")),
    ("FastAPI (routing, dependencies, encoders)", ("fastapi/",)),
    ("Starlette (middleware, requests, responses)", ("starlette/",)),
    ("kit (middlewares, auth, session dependency)", ("taskflow_kit/",)),
    ("task_service code", ("task_service/",)),
    ("uvicorn + httptools (HTTP/1.1, ASGI cycle)", ("uvicorn/", "httptools")),
    ("event loop (uvloop/asyncio, C I/O)", ("asyncio/", "uvloop", "runners.py")),
]
# Inclusive markers: the share of samples with such a frame anywhere on the stack.
MARKERS: list[tuple[str, tuple[str, ...]]] = [
    ("under SQLAlchemy (any frame, incl. the driver below it)", ("sqlalchemy/",)),
    ("pre-ping (pool do_ping)", ("do_ping",)),
    ("session commit / close (get_session's end)", ("commit (sqlalchemy", "close (sqlalchemy")),
    ("inside the middleware stack, outside the route", ("middleware",)),
]


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in LAYERS:
            if any(needle in frame for needle in needles):
                return name
    return "other (stdlib, C)"


def collapsed(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    for line in raw.decode().splitlines():
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
    marker_counts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        layer_counts[layer_of(frames)] += count
        for name, needles in MARKERS:
            if any(needle in frame for frame in frames for needle in needles):
                marker_counts[name] += count
        own[frames[-1]] += count
    lines = [f"{path.name}: {total} samples", "", "CPU by layer (innermost frame):"]
    for name, count in layer_counts.most_common():
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    lines += ["", "inclusive:"]
    for name, _ in MARKERS:
        lines.append(f"  {100 * marker_counts[name] / total:5.1f}%  {name}")
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
                "--gil",  # only the thread holding the GIL: idle pool threads are not CPU
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started = time.perf_counter()
        recorder = await drive(stack, ROUTES[route], seconds, 16)
        rps = recorder.count / (time.perf_counter() - started)
        spy.wait(60)
        output.with_suffix(".txt.gz").write_bytes(gzip.compress(output.read_bytes()))
        output.unlink()
        output = output.with_suffix(".txt.gz")
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
