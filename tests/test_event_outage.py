"""Redis stopped during a stream of writes: every write succeeds, and once Redis is back every
event arrives — none lost, none applied twice (counted end to end).

A rig of its own: a task-service and a stats-service on a throwaway Redis (append-only file,
so a stop and start keeps the streams, as a production Redis with persistence does), tokens
from the suite's user-service.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from tests.harness import (
    ALL_SERVICES,
    LOOPBACK,
    ServiceProcess,
    Suite,
    User,
    free_port,
    register_and_login,
    require_services,
    run_async,
    start_and_wait,
    wait_until,
)

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

API = "/api/v1"


@dataclass
class PersistentRedis:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", LOOPBACK,
                "--dir", str(self.folder),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self.answers, timeout=10, what="the throwaway Redis to answer")

    def answers(self) -> bool:
        try:
            return bool(redis_sync.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis_sync.RedisError:
            return False

    def stop(self) -> None:
        """A clean stop (SIGTERM: the append-only file is complete)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Rig:
    redis: PersistentRedis
    task: ServiceProcess
    stats: ServiceProcess
    prefix: str
    user: User


@pytest.fixture(scope="module")
def rig(
    suite: Suite, client: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    from taskflow_kit.migrations import ensure_database

    redis = PersistentRedis(free_port(suite.ports), tmp_path_factory.mktemp("redis-aof"))
    redis.start()
    database = f"{suite.database_server}/tf_suite_outage_{suite.run_id}"
    suite.databases.append(database)
    run_async(lambda: ensure_database(database))
    prefix = f"{suite.redis_prefix}outage:"
    # No user-service on this Redis (users come from the suite's): its epoch key is set as its
    # relay would, or the rig's token checks would wait for a revocation map (503).
    from taskflow_kit.testing import mark_revocations_complete

    run_async(lambda: mark_revocations_complete(redis.url, prefix))
    env = suite.base_env(redis_prefix=prefix) | {"REDIS_URL": redis.url}
    task = suite.add_process(
        "outage-task-service",
        "task_service",
        env | {"TASK_SERVICE_DATABASE_URL": database, "USER_SERVICE_URL": suite.user_url},
    )
    start_and_wait([task])
    stats = suite.add_process(
        "outage-stats-service", "stats_service", env | {"TASK_SERVICE_URL": task.url}
    )
    start_and_wait([stats])
    try:
        yield Rig(redis, task, stats, prefix, register_and_login(client, "outage"))
    finally:
        for process in (stats, task):
            process.stop()
        redis.stop()


def handled_by_stats(stats: ServiceProcess) -> Counter[str]:
    """`taskflow_events_handled_total` of the stats-service group, by outcome."""
    text = httpx.get(f"{stats.url}/metrics", timeout=5).text
    counts: Counter[str] = Counter()
    pattern = re.compile(
        r'^taskflow_events_handled_total\{[^}]*group="stats-service"[^}]*outcome="(\w+)"[^}]*\}'
        r" ([0-9.e+]+)$"
    )
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            counts[match.group(1)] += int(float(match.group(2)))
    return counts


def test_redis_stopped_during_writes_loses_no_event(rig: Rig) -> None:
    headers = rig.user.headers
    created: list[int] = []
    updated: list[int] = []
    write_seconds: list[float] = []
    with httpx.Client(base_url=rig.task.url, timeout=10) as http:

        def create(title: str) -> None:
            started = time.monotonic()
            response = http.post(f"{API}/tasks/", json={"title": title}, headers=headers)
            write_seconds.append(time.monotonic() - started)
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])

        for n in range(10):
            create(f"before {n}")
        rig.redis.stop()
        outage_started = len(write_seconds)
        for n in range(40):
            create(f"during {n}")
        for task_id in created[-10:]:
            response = http.patch(
                f"{API}/tasks/{task_id}", json={"priority": "high"}, headers=headers
            )
            assert response.status_code == 200, response.text
            updated.append(task_id)
        during = sorted(write_seconds[outage_started:])
        rig.redis.start()

    streams = redis_sync.Redis.from_url(rig.redis.url, decode_responses=True)
    key = f"{rig.prefix}events:task"

    def events() -> list[dict[str, object]]:
        return [json.loads(fields["event"]) for _, fields in streams.xrange(key)]

    def all_arrived() -> bool:
        return {int(str(e["subject_id"])) for e in events() if e["type"] == "task.created"} >= set(
            created
        )

    # Bounds for a loaded machine (the relay and the consumer back off up to 5 s while Redis is
    # down); on a quiet one both take 1-3 s. A wait, not a sleep: it ends when the condition holds.
    wait_until(all_arrived, timeout=60, interval=0.2, what="the outbox backlog to drain")
    published = events()
    ids = Counter(str(event["id"]) for event in published)
    assert max(ids.values()) == 1, "an event was published twice"
    kinds = Counter(str(event["type"]) for event in published)
    assert kinds["task.created"] == len(created) == 50
    assert kinds["task.updated"] == len(updated) == 10
    for task_id in updated:  # in order per subject: created before updated
        order = [str(e["type"]) for e in published if e["subject_id"] == str(task_id)]
        assert order == ["task.created", "task.updated"]

    # stats-service applied every event: its handler remembers an event in Redis once applied,
    # and its group acknowledged every entry. A handler call cut by the outage either failed
    # before that (retried once idle: `ok` then) or had applied and remembered the event just as
    # Redis closed the connection (the retry finds it remembered: `duplicate`, not a second
    # `ok`), so `ok` alone may stay below the number published; it never exceeds it.
    from taskflow_kit.consumer import group_lag
    from taskflow_kit.redis_client import create_redis

    seen = f"{rig.prefix}events:seen:stats-service:"

    async def stats_lag() -> int:
        client = create_redis(rig.redis.url)
        try:
            return await group_lag(client, key, "stats-service")
        finally:
            await client.aclose()

    def all_applied() -> bool:
        if run_async(stats_lag):  # undelivered or unacknowledged entries
            return False
        return all(streams.exists(f"{seen}{event['id']}") for event in published)

    wait_until(all_applied, timeout=60, interval=0.2, what="stats-service to apply every event")
    handled = handled_by_stats(rig.stats)
    assert handled["ok"] <= len(published)
    assert handled["ok"] + handled["duplicate"] >= len(published)
    # a handler call cut by the outage itself is retried, never dead-lettered
    assert handled["dead_letter"] == 0
    # a write during the outage never waited for Redis (p90 well under the commit wait)
    assert during[int(len(during) * 0.9)] < 0.25, during
