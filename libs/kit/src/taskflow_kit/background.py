"""Background loops a service runs for its lifetime (outbox relay, consumers, listeners)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import structlog

logger = structlog.get_logger("taskflow.background")

STOP_TIMEOUT = 5.0
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0


@contextlib.asynccontextmanager
async def running(*jobs: Coroutine[Any, Any, None]) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run `jobs` as tasks while the block runs; cancel them when it ends (waiting at most
    `STOP_TIMEOUT` seconds, so a stuck job cannot hold up shutdown)."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT) if tasks else (set(), set())
        for task in stuck:
            logger.warning("background_job_did_not_stop", job=task.get_coro())
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error("background_job_failed", exc_info=task.exception())


def stop_if_cancelled() -> None:
    """Raise `CancelledError` if the current task has been asked to stop.

    redis-py's asyncio client can swallow a cancellation that lands while a blocking command
    (`XREAD BLOCK`) is in flight and return its reply instead (redis/redis-py#2028, seen with
    8.1 on Python 3.11): a loop that never stops would hold up shutdown. The loops that run for
    a service's lifetime call this after every round."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def wait_for_up_to(awaitable: Awaitable[Any], seconds: float) -> bool:
    """Wait for `awaitable` at most `seconds`; True if it finished (its exception, if it
    raised one, is raised here).

    Unlike `asyncio.timeout` / `wait_for` on Python 3.11, a cancellation of the caller that
    coincides with the timeout is never swallowed (the loops that use this must stop when
    cancelled)."""
    waiter = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
    finally:
        if not waiter.done():
            waiter.cancel()
    if not done:
        return False
    waiter.result()  # re-raise what the awaitable raised
    return True


async def every(seconds: float, job: Callable[[], Awaitable[Any]], *, name: str) -> None:
    """Run `job` every `seconds` for ever; a failing run is logged and the next one happens."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:
            logger.exception("periodic_job_failed", job=name)


class Supervised:
    """The healthy/backoff loop every long-running worker shares (outbox relay, stream
    consumer, stream tail): run one round after another; a round that fails with one of
    `failures` marks the worker unhealthy (logged once, as `<event>_failing`), waits a backoff
    doubling from `FIRST_BACKOFF` up to `MAX_BACKOFF`, and the next round follows; the first
    round that succeeds again is logged as `<event>_recovered` and resets the backoff."""

    def __init__(
        self,
        event: str,
        *,
        failures: tuple[type[Exception], ...] = (Exception,),
        **log_fields: Any,
    ) -> None:
        self.event = event
        self.failures = failures
        self.log_fields = log_fields
        self.healthy = True

    async def run(
        self,
        round_: Callable[[], Awaitable[Any]],
        *,
        on_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        """Run `round_` until cancelled; `on_failure` sees each failure (metrics, state)."""
        backoff = FIRST_BACKOFF
        while True:
            try:
                await round_()
            except asyncio.CancelledError:
                raise
            except self.failures as exc:
                if on_failure is not None:
                    on_failure(exc)
                if self.healthy:
                    logger.warning(f"{self.event}_failing", error=str(exc), **self.log_fields)
                self.healthy = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if not self.healthy:
                logger.info(f"{self.event}_recovered", **self.log_fields)
            self.healthy = True
            backoff = FIRST_BACKOFF
