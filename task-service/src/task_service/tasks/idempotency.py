"""Idempotent creation: `POST /tasks/` with an `Idempotency-Key` creates once per (user, key)
within 24 h; the same key and body again gets the first answer, another body a 422."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from taskflow_kit.auth import Principal

from task_service.tasks.errors import IdempotencyKeyReused, IdempotencyKeyUnsettled
from task_service.tasks.idempotency_repository import IdempotencyRepository
from task_service.tasks.schemas import TaskCreate, TaskRead
from task_service.tasks.service import TaskService

IDEMPOTENCY_TTL = timedelta(hours=24)
# A claim that finds an expired record claims again, once: a bound, not a loop.
CLAIM_ATTEMPTS = 2


def request_fingerprint(data: TaskCreate) -> str:
    """A stable hash of the normalised creation body (same meaning → same hash)."""
    body = data.model_dump(mode="json")
    if body.get("project_id") is None:
        # A personal task hashes as before projects existed: keys remembered then still match.
        body.pop("project_id", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TaskCreation:
    """Creates tasks, once per Idempotency-Key when the client sends one."""

    def __init__(self, tasks: TaskService, records: IdempotencyRepository) -> None:
        self.tasks = tasks
        self.records = records

    async def create(self, principal: Principal, data: TaskCreate, key: str | None) -> TaskRead:
        if key is None:
            return await self.tasks.create(principal, data)
        return await self.create_once(principal, data, key)

    async def create_once(self, principal: Principal, data: TaskCreate, key: str) -> TaskRead:
        """Create, or replay the answer already given to this (user, Idempotency-Key)."""
        fingerprint = request_fingerprint(data)
        for _ in range(CLAIM_ATTEMPTS):
            now = self.tasks.clock()
            claimed = await self.records.claim(
                principal.id, key, fingerprint, now, now - IDEMPOTENCY_TTL
            )
            if claimed:
                break
            record = await self.records.get(principal.id, key)
            if record is None or record.response_body is None:
                # Only possible if the first request's record expired in between: claim again.
                continue
            if record.request_hash != fingerprint:
                raise IdempotencyKeyReused()
            return TaskRead.model_validate(record.response_body)
        else:
            raise IdempotencyKeyUnsettled()
        created = await self.tasks.create(principal, data)
        await self.records.save_response(principal.id, key, created.model_dump(mode="json"))
        return created
