"""Two hot-path changes measured in-process, old way vs new way, interleaved in one invocation.

- `flush`: the gateway rate limiter's flush of N keys' unsent hits (the profile's ~9%): one
  Redis call per key (`_send` per key, what `flush` did before) vs `flush()` (one pipeline).
  Real Redis (127.0.0.1:6379 or TEST_REDIS_URL), keys under a unique prefix, deleted after.
- `checkout`: a session's checkout + one SELECT + commit, as a request does it, on an engine
  with `pool_pre_ping=True` (before) vs the kit's engine (no pre-ping). Real PostgreSQL
  (127.0.0.1:5432 or TEST_DATABASE_URL), 8 concurrent requests on a pool of 10.

Prints CPU µs (process time of this process: client-side cost) and wall µs per operation, the
median of the rounds, and the ratio new/old. PostgreSQL's own CPU is not counted here.
Usage: uv run --frozen python bench/hot_path_micro.py [--rounds 5] [--keys 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from api_gateway.limits import GatewayRateLimits
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from taskflow_kit.db import async_database_url, create_engine, create_sessionmaker
from taskflow_kit.redis_client import create_redis
from taskflow_kit.testing import test_database_server_url, test_redis_url


async def timed(operation: Callable[[], Awaitable[None]], count: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        await operation()
    return (
        (time.process_time() - cpu) / count * 1e6,
        (time.perf_counter() - wall) / count * 1e6,
    )


async def flush_rounds(
    rounds: int, keys: int, flushes: int
) -> dict[str, list[tuple[float, float]]]:
    redis = create_redis(test_redis_url())
    prefix = f"bench-flush:{uuid.uuid4().hex[:8]}:"
    limits = GatewayRateLimits(
        redis, prefix=prefix, per_user=10**9, per_ip=10**9, window_seconds=3600
    )
    names = [f"user:{index}" for index in range(keys)]

    async def fill() -> None:
        for name in names:
            await limits._hit(name, 10**9)  # first hit of a key goes to Redis; later ones wait
            limits._windows[name].pending = 3

    async def old_flush() -> None:
        await fill()
        for name in names:
            window = limits._windows[name]
            amount, window.pending = window.pending, 0
            await limits._send(name, amount)

    async def new_flush() -> None:
        await fill()
        await limits.flush()

    async def fill_only() -> None:
        await fill()

    out: dict[str, list[tuple[float, float]]] = {"old": [], "new": [], "fill": []}
    try:
        for _ in range(rounds):
            for name, operation in (("old", old_flush), ("new", new_flush), ("fill", fill_only)):
                out[name].append(await timed(operation, flushes))
    finally:
        found = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if found:
            await redis.delete(*found)
        await redis.aclose()
    return out


async def checkout_rounds(rounds: int, requests: int) -> dict[str, list[tuple[float, float]]]:
    url = test_database_server_url()
    engines = {
        "old": create_async_engine(
            async_database_url(url), pool_size=10, max_overflow=10, pool_pre_ping=True
        ),
        "new": create_engine(url),
    }

    def request_for(name: str) -> Callable[[], Awaitable[None]]:
        sessionmaker = create_sessionmaker(engines[name])

        async def one() -> None:
            async with sessionmaker() as session:
                await session.execute(text("SELECT 1"))
                await session.commit()

        async def eight() -> None:
            await asyncio.gather(*(one() for _ in range(8)))

        return eight

    out: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    try:
        for name in engines:  # warm both pools
            await timed(request_for(name), 20)
        for _ in range(rounds):
            for name in engines:
                cpu, wall = await timed(request_for(name), requests // 8)
                out[name].append((cpu / 8, wall / 8))
    finally:
        for engine in engines.values():
            await engine.dispose()
    return out


def report(title: str, unit: str, results: dict[str, list[tuple[float, float]]]) -> None:
    medians = {
        name: (statistics.median(c for c, _ in rows), statistics.median(w for _, w in rows))
        for name, rows in results.items()
    }
    print(f"{title}: median of {len(next(iter(results.values())))} rounds, per {unit}")
    for name, (cpu, wall) in medians.items():
        spread = ", ".join(f"{c:.0f}" for c, _ in results[name])
        print(f"  {name:5s} CPU {cpu:8.0f} us  wall {wall:8.0f} us   (CPU per round: {spread})")
    print(f"  new/old CPU {medians['new'][0] / medians['old'][0]:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keys", type=int, default=50)
    args = parser.parse_args()
    flush = await flush_rounds(args.rounds, args.keys, flushes=40)
    report(f"rate-limit flush of {args.keys} keys (incl. refilling them)", "flush", flush)
    checkout = await checkout_rounds(args.rounds, requests=800)
    report("session checkout + SELECT 1 + commit", "request", checkout)


if __name__ == "__main__":
    asyncio.run(main())
