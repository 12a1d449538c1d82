"""The demo seed's past: spread over the last weeks, every completion after its creation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskflow_devstack.seed import TASKS, history


def test_history_spreads_the_seed_over_four_weeks_with_a_consistent_order() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    created = {task.key: index + 100 for index, task in enumerate(TASKS)}
    rows = history(created, now)
    assert [task_id for task_id, _, _ in rows] == list(created.values())
    created_at = [at for _, at, _ in rows]
    assert min(created_at) >= now - timedelta(days=28)
    assert max(created_at) < now
    assert len({at.date() for at in created_at}) >= 10  # a shape, not one day
    for task, (_, made, completed) in zip(TASKS, rows, strict=True):
        assert (completed is not None) == (task.status == "done")
        if completed is not None:
            assert made < completed < now
