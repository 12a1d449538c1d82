"""task-service composition: one typed state, read through the request."""

from __future__ import annotations


def test_service_code_reads_its_typed_state_never_app_state() -> None:
    """One typed State built by the lifespan and read through `request.state` (StateDep): no
    part of the service is looked up on `app.state` by name."""
    from pathlib import Path

    import task_service

    root = Path(task_service.__file__).parent
    offenders = [str(path) for path in root.rglob("*.py") if "app.state" in path.read_text()]
    assert offenders == []
    assert (root / "state.py").exists()
