"""`create_once` claims a key a bounded number of times: a record that keeps expiring under
the request ends in a retryable 503, never in unbounded recursion."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from task_service.tasks.errors import IdempotencyKeyUnsettled
from task_service.tasks.idempotency import CLAIM_ATTEMPTS, TaskCreation
from task_service.tasks.schemas import TaskCreate
from taskflow_kit.auth import Principal


class ExpiringRecords:
    """Every claim loses, and the winner's record is gone when read (expired in between)."""

    def __init__(self) -> None:
        self.claims = 0

    async def claim(self, *_: Any) -> bool:
        self.claims += 1
        return False

    async def get(self, *_: Any) -> None:
        return None


class Clock:
    def clock(self) -> datetime:
        return datetime.now(UTC)


async def test_a_key_whose_record_keeps_expiring_is_a_bounded_503() -> None:
    records = ExpiringRecords()
    creation = TaskCreation(cast(Any, Clock()), cast(Any, records))
    principal = Principal(id=1, username="alice", is_superuser=False, token="t")
    with pytest.raises(IdempotencyKeyUnsettled) as raised:
        await creation.create_once(principal, TaskCreate(title="once"), "key-1")
    assert records.claims == CLAIM_ATTEMPTS == 2
    assert raised.value.status_code == 503
    assert "Retry-After" in raised.value.headers
