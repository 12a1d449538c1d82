"""A second stack (the benchmark's) shifts every port and keeps its data apart from `.data/`."""

from __future__ import annotations

from pathlib import Path

import pytest
from taskflow_devstack.__main__ import SERVICES, Stack


def test_offset_moves_every_port_and_the_services_urls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TASKFLOW_PORT_OFFSET", "10000")
    monkeypatch.setenv("TASKFLOW_DATA_DIR", str(tmp_path / "bench-data"))
    monkeypatch.delenv("USER_SERVICE_URL", raising=False)
    monkeypatch.setenv("GATEWAY_TASK_SERVICE_URLS", "http://127.0.0.1:9999")
    stack = Stack(tmp_path)
    stack.service_urls()

    assert {s.name: stack.port(s) for s in SERVICES} == {
        "user-service": 18001,
        "task-service": 18002,
        "stats-service": 18003,
        "api-gateway": 18000,
    }
    assert stack.data == tmp_path / "bench-data"
    assert stack.env["USER_SERVICE_URL"] == "http://127.0.0.1:18001"
    assert stack.env["TASK_SERVICE_URL"] == "http://127.0.0.1:18002"
    assert stack.env["GATEWAY_STATS_SERVICE_URLS"] == "http://127.0.0.1:18003"
    assert stack.env["GATEWAY_TASK_SERVICE_URLS"] == "http://127.0.0.1:9999"  # configured wins


def test_without_settings_the_stack_is_the_usual_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TASKFLOW_PORT_OFFSET", raising=False)
    monkeypatch.delenv("TASKFLOW_DATA_DIR", raising=False)
    stack = Stack(tmp_path)

    assert [stack.port(s) for s in SERVICES] == [8001, 8002, 8003, 8000]
    assert stack.data == tmp_path / ".data"


def test_make_run_opts_into_loopback_trust_and_a_setting_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GATEWAY_TRUST_LOOPBACK", raising=False)
    assert Stack(tmp_path).env["GATEWAY_TRUST_LOOPBACK"] == "true"
    monkeypatch.setenv("GATEWAY_TRUST_LOOPBACK", "false")
    assert Stack(tmp_path).env["GATEWAY_TRUST_LOOPBACK"] == "false"
