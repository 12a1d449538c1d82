"""One trace across every hop: a client's `traceparent` through the gateway to a task-service
replica and on to user-service (assignee check), its trace id on each one's JSON log lines.

task-service answers the assignee check from its own table of users it has heard of (user
events) and asks user-service only about a user it does not know: the request names an
assignee id that no account has, so the call to user-service is certain (answered 404, so the
task is refused with 422)."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from tests.harness import (
    ALL_SERVICES,
    ServiceProcess,
    Suite,
    register_and_login,
    require_services,
    unique,
    wait_until,
)

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite


def lines_with_trace(process: ServiceProcess, trace_id: str) -> list[dict[str, object]]:
    found = []
    for line in process.log_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("trace_id") == trace_id:
            found.append(entry)
    return found


def test_a_trace_id_crosses_gateway_task_service_and_user_service(
    suite: Suite, client: httpx.Client
) -> None:
    owner = register_and_login(client, "tracer", richer=True)
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"

    response = client.post(
        "/api/v1/tasks/",
        json={"title": unique("traced "), "assignee_id": 987_654_321},
        headers=owner.headers | {"traceparent": traceparent},
    )
    assert response.status_code == 422, response.text

    assert suite.gateway is not None
    assert suite.user is not None
    hops = {"gateway": [suite.gateway], "task-service": suite.task_replicas, "user": [suite.user]}

    def every_hop_logged() -> bool:
        return all(
            any(lines_with_trace(p, trace_id) for p in processes) for processes in hops.values()
        )

    try:
        wait_until(every_hop_logged, timeout=10, what="the trace id in every hop's log")
    except AssertionError:
        missing = [
            hop
            for hop, processes in hops.items()
            if not any(lines_with_trace(p, trace_id) for p in processes)
        ]
        tails = "\n".join(p.log_tail(5) for ps in hops.values() for p in ps)
        raise AssertionError(f"no line with the trace id from {missing}:\n{tails}") from None
    for processes in hops.values():
        entries = [entry for p in processes for entry in lines_with_trace(p, trace_id)]
        # Each hop's access line for this request carries the trace id, and nothing else does.
        assert any(entry["event"] == "request" for entry in entries), entries
        assert len({entry["request_id"] for entry in entries}) == 1, entries
    task_lines = [e for p in suite.task_replicas for e in lines_with_trace(p, trace_id)]
    assert any(e["method"] == "POST" for e in task_lines if e["event"] == "request")
