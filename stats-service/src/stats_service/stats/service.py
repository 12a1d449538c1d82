"""Statistics from task-service's aggregates: derived, cached, and honest when it fails."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Generic, TypeVar

import structlog
from prometheus_client import Counter
from pydantic import TypeAdapter, ValidationError
from taskflow_kit.auth import Principal
from taskflow_kit.resilience import UpstreamUnavailable

from stats_service.stats.cache import CacheEntry, StatsCache
from stats_service.stats.errors import StatsUnavailable
from stats_service.stats.schemas import ActivityDay, OverviewRead, StatsRead, TaskAggregates
from stats_service.stats.upstream import Fetched, TaskAggregatesClient

T = TypeVar("T")

logger = structlog.get_logger("stats_service.stats")

ANSWERS = Counter(
    "taskflow_stats_answers_total",
    "Statistics answers by where they came from",
    ["view", "source"],  # source: cache | upstream | stale | unavailable
)

# The summary and overview need no activity series: ask task-service for the smallest one.
_SUMMARY_ACTIVITY_DAYS = 1

_STATS = TypeAdapter(StatsRead)
_OVERVIEW = TypeAdapter(OverviewRead)
_ACTIVITY = TypeAdapter(list[ActivityDay])


@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    """A value and whether it is the last known one, served because task-service failed."""

    value: T
    stale: bool = False
    age_seconds: int = 0


def completed_percentage(completed: int, total: int) -> float:
    """`completed` as a percentage of `total`, rounded half up to 2 places; 0 for no tasks."""
    if total <= 0:
        return 0.0
    exact = Decimal(completed * 100) / Decimal(total)
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def activity_series(rows: Iterable[ActivityDay], *, today: dt.date, days: int) -> list[ActivityDay]:
    """One row per UTC day from `today - days + 1` to `today`, zero where nothing happened.

    task-service already zero-fills; rebuilding the series keeps the answer's shape exact
    even if a row is missing, duplicated or outside the window.
    """
    counts: dict[dt.date, tuple[int, int]] = {}
    for row in rows:
        created, completed = counts.get(row.date, (0, 0))
        counts[row.date] = (created + row.created, completed + row.completed)
    first = today - dt.timedelta(days=days - 1)
    series = []
    for offset in range(days):
        day = first + dt.timedelta(days=offset)
        created, completed = counts.get(day, (0, 0))
        series.append(ActivityDay(date=day, created=created, completed=completed))
    return series


def user_stats(aggregates: TaskAggregates) -> StatsRead:
    completed = aggregates.by_status.done
    return StatsRead(
        total_tasks=aggregates.total,
        completed_tasks=completed,
        completed_percentage=completed_percentage(completed, aggregates.total),
        by_status=aggregates.by_status,
        by_priority=aggregates.by_priority,
        overdue=aggregates.overdue,
        due_next_7_days=aggregates.due_next_7_days,
        completed_last_7_days=aggregates.completed_last_7_days,
        generated_at=aggregates.generated_at,
    )


def system_overview(aggregates: TaskAggregates) -> OverviewRead:
    completed = aggregates.by_status.done
    return OverviewRead(
        total_tasks=aggregates.total,
        completed_tasks=completed,
        completed_percentage=completed_percentage(completed, aggregates.total),
        by_status=aggregates.by_status,
        by_priority=aggregates.by_priority,
        overdue=aggregates.overdue,
        owners=aggregates.owners,
        generated_at=aggregates.generated_at,
    )


def user_activity(aggregates: TaskAggregates, *, days: int) -> list[ActivityDay]:
    today = aggregates.generated_at.astimezone(dt.UTC).date()
    return activity_series(aggregates.activity, today=today, days=days)


def _user_scope(principal: Principal, project_id: int | None) -> str:
    """The cache key's stem. A project's figures are cached per member (under the member's
    invalidation scope, `user:<id>`): membership is checked by task-service on every miss, so a
    copy is never served to someone who was not a member when it was computed, and the
    `project.member_removed` event that names them invalidates it."""
    if project_id is None:
        return f"user:{principal.id}"
    return f"user:{principal.id}:project:{project_id}"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StatsService:
    """Answers from the fresh cache, else from task-service (then cached), else, only while
    task-service fails, from the last known good copy marked stale; else 503."""

    def __init__(
        self,
        upstream: TaskAggregatesClient,
        cache: StatsCache,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.upstream = upstream
        self.cache = cache
        self.clock = clock
        self._in_flight: dict[tuple[str, ...], asyncio.Future[Any]] = {}

    async def user_stats(
        self, principal: Principal, *, project_id: int | None = None
    ) -> Served[StatsRead]:
        key = f"{_user_scope(principal, project_id)}:summary"
        served = await self._serve(
            key,
            "summary",
            _STATS,
            self._fetcher(
                principal.token,
                system=False,
                activity_days=_SUMMARY_ACTIVITY_DAYS,
                project_id=project_id,
            ),
            user_stats,
            caller=principal.token,
        )
        return _mark_stale(served)

    async def user_activity(
        self, principal: Principal, *, days: int, project_id: int | None = None
    ) -> Served[list[ActivityDay]]:
        def build(aggregates: TaskAggregates) -> list[ActivityDay]:
            return user_activity(aggregates, days=days)

        key = f"{_user_scope(principal, project_id)}:activity:{days}"
        return await self._serve(
            key,
            "activity",
            _ACTIVITY,
            self._fetcher(principal.token, system=False, activity_days=days, project_id=project_id),
            build,
            caller=principal.token,
        )

    async def system_overview(self, principal: Principal) -> Served[OverviewRead]:
        key = "system:overview"
        served = await self._serve(
            key,
            "overview",
            _OVERVIEW,
            self._fetcher(principal.token, system=True, activity_days=_SUMMARY_ACTIVITY_DAYS),
            system_overview,
            caller=principal.token,
        )
        return _mark_stale(served)

    def _fetcher(
        self, token: str, *, system: bool, activity_days: int, project_id: int | None = None
    ) -> Callable[[str | None], Awaitable[Fetched]]:
        async def fetch(tag: str | None) -> Fetched:
            return await self.upstream.fetch_if_changed(
                token,
                system=system,
                activity_days=activity_days,
                tag=tag,
                project_id=project_id,
            )

        return fetch

    async def _serve(
        self,
        key: str,
        view: str,
        adapter: TypeAdapter[T],
        fetch: Callable[[str | None], Awaitable[Fetched]],
        build: Callable[[TaskAggregates], T],
        *,
        caller: str,
    ) -> Served[T]:
        """A copy without task-service's tag is served while the cache says it is current (the
        events invalidate it); a copy with one is served once task-service confirms the tag
        (304), so a read right after a write sees it even before its event is handled."""
        lookup = await self.cache.lookup(key)
        held = lookup.held
        if held is None or held.tag is None:
            cached = _load(adapter, lookup.entry)
            if cached is not None:
                ANSWERS.labels(view, "cache").inc()
                return Served(cached)
        tag = held.tag if held is not None else None
        try:
            fetched = await self._once((key, caller, tag or ""), lambda: fetch(tag))
        except UpstreamUnavailable as exc:
            return await self._last_known(key, view, adapter, exc)
        if fetched.aggregates is None:
            confirmed = _load(adapter, held)
            if confirmed is not None:
                ANSWERS.labels(view, "cache").inc()
                return Served(confirmed)
            fetched = await self._once((key, caller, ""), lambda: fetch(None))
        assert fetched.aggregates is not None  # an unconditional fetch always has a body
        value = build(fetched.aggregates)
        await self.cache.store(
            key,
            adapter.dump_python(value, mode="json"),
            now=self.clock(),
            generation=lookup.generation,
            tag=fetched.tag,
        )
        ANSWERS.labels(view, "upstream").inc()
        return Served(value)

    async def _once(self, flight: tuple[str, ...], compute: Callable[[], Awaitable[T]]) -> T:
        """Concurrent misses of one caller for one key share a single task-service call (a
        dashboard opening several tabs costs one aggregate query, not one per tab)."""
        running = self._in_flight.get(flight)
        if running is None:
            running = asyncio.ensure_future(compute())
            self._in_flight[flight] = running
            running.add_done_callback(lambda done: self._landed(flight, done))
        # Shielded: a caller that goes away does not cancel the call the others wait for.
        result: T = await asyncio.shield(running)
        return result

    def _landed(self, flight: tuple[str, ...], done: asyncio.Future[Any]) -> None:
        self._in_flight.pop(flight, None)
        if not done.cancelled():
            done.exception()  # marks a failure as seen even when every waiter has gone

    async def _last_known(
        self, key: str, view: str, adapter: TypeAdapter[T], failure: UpstreamUnavailable
    ) -> Served[T]:
        entry = await self.cache.last_good(key)
        value = _load(adapter, entry)
        if entry is None or value is None:
            ANSWERS.labels(view, "unavailable").inc()
            logger.warning("stats_unavailable", view=view, reason=failure.detail)
            retry_after = int(failure.headers.get("Retry-After", "5"))
            raise StatsUnavailable(
                "Statistics are unavailable: task-service does not answer and no earlier "
                "value is kept",
                retry_after=retry_after,
            ) from failure
        ANSWERS.labels(view, "stale").inc()
        logger.warning("stats_served_stale", view=view, reason=failure.detail)
        age = max(0, int((self.clock() - entry.stored_at).total_seconds()))
        return Served(value, stale=True, age_seconds=age)


def _load(adapter: TypeAdapter[T], entry: CacheEntry | None) -> T | None:
    if entry is None:
        return None
    try:
        return adapter.validate_python(entry.value)
    except ValidationError:
        logger.warning("cache_entry_invalid")
        return None


S = TypeVar("S", StatsRead, OverviewRead)


def _mark_stale(served: Served[S]) -> Served[S]:
    if not served.stale:
        return served
    return Served(
        served.value.model_copy(update={"stale": True}), stale=True, age_seconds=served.age_seconds
    )
