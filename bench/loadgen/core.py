"""Generic load generation on aiohttp: a recorder, a closed loop and an open loop.

Closed loop: N workers, each sends its next request when the previous one answered (throughput at
saturation). Open loop: every virtual user fires on its own schedule (think time drawn after each
*scheduled* start, not after the answer), and latency is measured from the scheduled start, so a
slow server is not hidden by the generator waiting for it (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Recorder:
    """Latencies (seconds) by route name, failures by route name, the first few failures."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    recording: bool = True

    def add(self, name: str, seconds: float, ok: bool, detail: str = "") -> None:
        if not self.recording:
            return
        self.latencies.setdefault(name, []).append(seconds)
        if not ok:
            self.failures[name] = self.failures.get(name, 0) + 1
            if len(self.examples) < 5:
                self.examples.append(f"{name}: {detail}")

    @property
    def count(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def all_latencies(self) -> list[float]:
        return [value for values in self.latencies.values() for value in values]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Client:
    """One aiohttp session (keep-alive pool) that times every request into a recorder."""

    def __init__(self, recorder: Recorder, *, connections: int) -> None:
        self.recorder = recorder
        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        name: str,
        method: str,
        url: str,
        *,
        expect: tuple[int, ...] = (200,),
        started: float | None = None,
        **kwargs: Any,
    ) -> tuple[int, bytes]:
        """Send one request; record its latency from `started` (default: now)."""
        start = time.perf_counter() if started is None else started
        try:
            async with self.session.request(method, url, **kwargs) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.recorder.add(name, time.perf_counter() - start, False, repr(exc))
            return 0, b""
        ok = status in expect
        self.recorder.add(name, time.perf_counter() - start, ok, f"{status} {body[:200]!r}")
        return status, body


Action = Callable[[float | None], Awaitable[None]]


async def closed_loop(actions: list[Callable[[], Action]], seconds: float) -> None:
    """One worker per action factory, each looping without think time until the deadline."""
    deadline = time.perf_counter() + seconds

    async def worker(factory: Callable[[], Action]) -> None:
        action = factory()
        while time.perf_counter() < deadline:
            await action(None)

    await asyncio.gather(*(worker(factory) for factory in actions))


DRAIN_SECONDS = 5.0


async def drain(in_flight: set[asyncio.Task[None]], recorder: Recorder | None) -> None:
    """Wait a little for requests still in flight; count those abandoned as failures."""
    if not in_flight:
        return
    _, pending = await asyncio.wait(set(in_flight), timeout=DRAIN_SECONDS)
    for task in pending:
        task.cancel()
    if recorder is not None:
        for _ in pending:
            recorder.add("unanswered", DRAIN_SECONDS, False, "no answer by the end of the window")
    await asyncio.gather(*pending, return_exceptions=True)


async def open_loop(
    actions: list[Callable[[], Action]],
    seconds: float,
    think: tuple[float, float],
    rng: random.Random,
    recorder: Recorder | None = None,
) -> None:
    """Each virtual user starts a request every uniform(*think) seconds of schedule, whether or
    not its previous one answered; latency counts from the scheduled start."""
    deadline = time.perf_counter() + seconds
    in_flight: set[asyncio.Task[None]] = set()

    async def user(factory: Callable[[], Action]) -> None:
        action = factory()
        scheduled = time.perf_counter() + rng.uniform(0, think[1])  # spread the arrivals
        while scheduled < deadline:
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(action(scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            scheduled += rng.uniform(*think)

    await asyncio.gather(*(user(factory) for factory in actions))
    await drain(in_flight, recorder)


async def fixed_rate(
    action: Action, rate: float, seconds: float, recorder: Recorder | None = None
) -> None:
    """Requests start on a fixed schedule (`rate` per second), latency from the schedule."""
    interval = 1.0 / rate
    start = time.perf_counter()
    in_flight: set[asyncio.Task[None]] = set()
    index = 0
    while True:
        scheduled = start + index * interval
        if scheduled - start >= seconds:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(action(scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        index += 1
    await drain(in_flight, recorder)
