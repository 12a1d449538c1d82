"""task-service composition: one typed state, read through the request."""

from __future__ import annotations


def test_service_code_reads_its_typed_state_never_app_state() -> None:
    import task_service
    from taskflow_kit.testing import modules_reading_app_state

    assert modules_reading_app_state(task_service) == []
