"""The live-updates hub: routing of events, slow clients, token expiry and revocation."""

from __future__ import annotations

import contextlib
import io
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from api_gateway.live import (
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TOO_MANY_SOCKETS,
    CLOSE_TRY_AGAIN,
    CLOSE_UNSUPPORTED,
    LiveConnection,
    LiveHub,
)
from api_gateway.main import create_app
from conftest import TOKEN_CONFIG, access_token, gateway_settings
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from taskflow_kit.auth import TokenVerifier, principal_from_token
from taskflow_kit.events import Event
from taskflow_kit.revocation import Revocation, RevocationList


def hub(revocations: RevocationList | None = None) -> LiveHub:
    return LiveHub(
        None,  # type: ignore[arg-type]  # the stream is not read in these tests
        key_prefix="t:",
        verifier=TokenVerifier(TOKEN_CONFIG, revocations),
        queue_size=4,
    )


def connect(live: LiveHub, user_id: int) -> LiveConnection:
    principal = principal_from_token(TOKEN_CONFIG, access_token(user_id))
    connection = LiveConnection(principal, live.queue_size)
    live.connections[user_id].add(connection)
    return connection


def drained(connection: LiveConnection) -> list[dict[str, object]]:
    messages = []
    while not connection.queue.empty():
        messages.append(json.loads(connection.queue.get_nowait()))
    return messages


def task_event(owner: int, assignee: int | None, previous: int | None = None) -> Event:
    return Event(
        type="task.assigned",
        producer="task-service",
        subject_id="9",
        data={
            "task": {"id": 9},
            "owner_id": owner,
            "assignee_id": assignee,
            "previous_assignee_id": previous,
        },
    )


async def test_events_reach_the_owner_and_assignee_and_a_removed_assignee_learns_it() -> None:
    live = hub()
    owner, assignee, removed, stranger = (connect(live, n) for n in (1, 2, 3, 4))
    await live.deliver(task_event(1, 2, previous=3))
    assert [m["type"] for m in drained(owner)] == ["task.assigned"]
    assert [m["type"] for m in drained(assignee)] == ["task.assigned"]
    lost = drained(removed)
    assert [(m["type"], m["subject_id"]) for m in lost] == [("task.access_lost", "9")]
    assert "data" not in lost[0]  # nothing of the task after access ends
    assert drained(stranger) == []


async def test_a_project_event_reaches_its_audience_and_a_removed_member_learns_it() -> None:
    live = hub()
    owner, member, removed, stranger = (connect(live, n) for n in (1, 2, 3, 4))
    # A project task: its members see it, though only 1 owns it and nobody is assigned.
    await live.deliver(
        Event(
            type="task.updated",
            producer="task-service",
            subject_id="9",
            data={"task": {"id": 9}, "owner_id": 1, "assignee_id": None, "audience": [1, 2, 3]},
        )
    )
    assert [len(drained(c)) for c in (owner, member, removed, stranger)] == [1, 1, 1, 0]
    await live.deliver(
        Event(
            type="project.member_removed",
            producer="task-service",
            subject_id="5",
            data={"project_id": 5, "user_id": 3, "reason": "removed", "audience": [1, 2, 3]},
        )
    )
    for connection in (owner, member):
        assert [m["type"] for m in drained(connection)] == ["project.member_removed"]
    told = drained(removed)
    assert [m["type"] for m in told] == ["project.member_removed", "project.access_lost"]
    assert (told[1]["project_id"], told[1]["reason"]) == (5, "removed")
    assert drained(stranger) == []
    # Later events of the project name the members left: the removed one gets nothing.
    await live.deliver(
        Event(
            type="task.updated",
            producer="task-service",
            subject_id="9",
            data={"task": {"id": 9}, "owner_id": 1, "assignee_id": None, "audience": [1, 2]},
        )
    )
    assert [len(drained(c)) for c in (owner, member, removed)] == [1, 1, 0]


async def test_a_client_that_falls_behind_is_closed_with_1013_not_buffered() -> None:
    live = hub()
    slow = connect(live, 1)
    for _ in range(live.queue_size):
        await live.deliver(task_event(1, None))
    assert slow.closing is None
    await live.deliver(task_event(1, None))
    assert slow.closing is not None
    assert slow.closing[0] == CLOSE_TRY_AGAIN
    assert slow.queue.qsize() == live.queue_size  # memory stays bounded
    slow.offer("more")
    assert slow.queue.qsize() == live.queue_size


async def test_revocation_closes_only_the_voided_sockets() -> None:
    revocations = RevocationList()
    live = hub(revocations)
    voided, other_user = connect(live, 1), connect(live, 2)
    revocation = Revocation(1, before=time.time() + 1)
    revocations.apply(revocation)
    live.revoked(revocation)
    assert voided.closing == (CLOSE_POLICY, "token revoked")
    assert other_user.closing is None


def receive_until_closed(ws: Any) -> None:
    while True:
        ws.receive_json()  # heartbeats at most


def test_a_socket_closes_when_its_token_expires() -> None:
    app = create_app(gateway_settings())
    token = access_token(7, ttl=timedelta(seconds=2))
    with TestClient(app) as client, client.websocket_connect("/api/v1/ws") as ws:
        ws.send_text(json.dumps({"token": token}))
        assert ws.receive_json() == {"type": "ready", "user_id": 7}
        started = time.monotonic()
        with pytest.raises(WebSocketDisconnect) as closed:
            receive_until_closed(ws)
        assert closed.value.code == CLOSE_POLICY
        assert closed.value.reason == "token expired"
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("token", ["", "garbage", access_token(1, ttl=timedelta(seconds=-5))])
def test_a_bad_token_by_first_message_closes_with_1008(token: str) -> None:
    app = create_app(gateway_settings())
    with TestClient(app) as client, client.websocket_connect("/api/v1/ws") as ws:
        ws.send_text(json.dumps({"token": token}))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == CLOSE_POLICY


def test_a_socket_gets_a_request_id_an_access_line_and_metrics() -> None:
    from prometheus_client import REGISTRY
    from taskflow_kit.logs import LineWriter, access_log

    app = create_app(gateway_settings(log_level="INFO"))
    lines = io.StringIO()
    access_log.writer = LineWriter(lines)
    series = {"service": "api-gateway", "method": "WEBSOCKET", "route": "/api/v1/ws"}
    accepted = {**series, "status": "101"}
    before = REGISTRY.get_sample_value("taskflow_http_requests_total", accepted) or 0.0
    token = access_token(7)
    with (
        TestClient(app) as client,
        client.websocket_connect("/api/v1/ws", headers={"X-Request-ID": "live-42"}) as ws,
    ):
        ws.send_text(json.dumps({"token": token}))
        assert ws.receive_json() == {"type": "ready", "user_id": 7}
        assert (b"x-request-id", b"live-42") in (ws.extra_headers or [])
        ws.close()
    access_log.writer.flush()
    after = REGISTRY.get_sample_value("taskflow_http_requests_total", accepted)
    assert after == before + 1
    assert REGISTRY.get_sample_value("taskflow_http_request_duration_seconds_count", series)
    (line,) = [entry for entry in lines.getvalue().splitlines() if "live-42" in entry]
    assert "method=WEBSOCKET" in line
    assert "path=/api/v1/ws" in line
    assert "status=101" in line
    assert "request_id=live-42" in line


def test_the_stream_is_followed_only_while_a_socket_is_open_and_from_before_ready() -> None:
    """A replica with no socket does not read the task stream (every write of the API makes an
    event); the first socket resumes it before `ready`, so an event published right after
    `ready` reaches it; the last socket to leave pauses it again."""
    import redis as sync_redis
    from taskflow_kit.events import EVENT_FIELD, TASK_STREAM, stream_key

    settings = gateway_settings()
    app = create_app(settings)
    stream = stream_key(settings.redis_prefix, TASK_STREAM)
    publisher = sync_redis.Redis.from_url(settings.redis_url)
    event = Event(
        type="task.updated",
        producer="task-service",
        subject_id="5",
        data={"task": {"id": 5}, "audience": [7]},
    )
    try:
        with TestClient(app) as client:
            live = app.state.gateway.live
            assert live.status()["paused"] is True
            # User 7's, but published before the socket: not sent (nobody was listening).
            publisher.xadd(stream, {EVENT_FIELD: task_event(7, None).to_json()})
            with client.websocket_connect("/api/v1/ws") as ws:
                ws.send_text(json.dumps({"token": access_token(7)}))
                assert ws.receive_json() == {"type": "ready", "user_id": 7}
                assert live.status()["paused"] is False
                publisher.xadd(stream, {EVENT_FIELD: event.to_json()})
                received = ws.receive_json()
                assert (received["type"], received["id"]) == ("task.updated", event.id)
                ws.close()
            deadline = time.monotonic() + 5  # the server ends the socket after the client
            while not live.status()["paused"] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert live.status()["paused"] is True
    finally:
        publisher.delete(stream)
        publisher.close()


def closed_with(ws: Any) -> tuple[int, str]:
    """The close of a socket whose next message must be its close (nothing else arrives)."""
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    return closed.value.code, closed.value.reason


def test_a_token_in_the_url_works_as_the_contract_says_until_an_operator_turns_it_off() -> None:
    """ARCHITECTURE.md lists `?token=` beside the first message: existing clients keep working.
    Issue 21 point 8 asked it dropped (URLs end up in logs); GATEWAY_WS_QUERY_TOKEN=false does."""
    token = access_token(7)
    with (
        TestClient(create_app(gateway_settings())) as client,
        client.websocket_connect(f"/api/v1/ws?token={token}") as ws,
    ):
        assert ws.receive_json()["type"] == "ready"
    off = create_app(gateway_settings(ws_query_token=False))
    with TestClient(off) as client, client.websocket_connect(f"/api/v1/ws?token={token}") as ws:
        ws.send_text(json.dumps({"type": "ping"}))  # a first message without a token
        assert closed_with(ws)[0] == CLOSE_POLICY


def test_an_oversized_message_closes_with_1009_before_and_after_authentication() -> None:
    app = create_app(gateway_settings(ws_max_message_bytes=2048))
    token = access_token(7)
    with TestClient(app) as client:
        with client.websocket_connect("/api/v1/ws") as ws:
            ws.send_text(json.dumps({"token": token, "pad": "x" * 2048}))
            code, reason = closed_with(ws)
            assert code == CLOSE_TOO_BIG
            assert "2048" in reason
        with client.websocket_connect("/api/v1/ws") as ws:
            ws.send_text(json.dumps({"token": token}))
            assert ws.receive_json()["type"] == "ready"
            ws.send_text(json.dumps({"type": "ping"}))
            assert ws.receive_json() == {"type": "pong"}
            ws.send_text("é" * 1100)  # 1100 characters, 2200 bytes: bytes count
            assert closed_with(ws)[0] == CLOSE_TOO_BIG


def test_a_binary_frame_closes_with_1003() -> None:
    app = create_app(gateway_settings())
    with TestClient(app) as client, client.websocket_connect("/api/v1/ws") as ws:
        ws.send_text(json.dumps({"token": access_token(7)}))
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes(b"\x00" * 16)
        assert closed_with(ws)[0] == CLOSE_UNSUPPORTED


def test_a_user_may_hold_only_so_many_sockets_and_others_are_not_affected() -> None:
    app = create_app(gateway_settings(ws_max_sockets_per_user=2))
    with TestClient(app) as client, contextlib.ExitStack() as sockets:

        def open_socket(user_id: int) -> Any:
            ws = sockets.enter_context(client.websocket_connect("/api/v1/ws"))
            ws.send_text(json.dumps({"token": access_token(user_id)}))
            return ws

        first, second = open_socket(7), open_socket(7)
        for ws in (first, second):
            assert ws.receive_json() == {"type": "ready", "user_id": 7}
        third = open_socket(7)
        code, reason = closed_with(third)
        assert code == CLOSE_TOO_MANY_SOCKETS
        assert "at most 2" in reason
        other = open_socket(8)  # another user is not counted against user 7
        assert other.receive_json() == {"type": "ready", "user_id": 8}
        first.close()
        deadline = time.monotonic() + 5
        refusals: list[int] = []
        while True:  # the closed socket's slot frees once the gateway has seen it go
            assert time.monotonic() < deadline, refusals
            again = open_socket(7)
            try:
                ready = again.receive_json()
            except WebSocketDisconnect as refused:
                refusals.append(refused.code)
                continue
            break
        assert ready == {"type": "ready", "user_id": 7}
        assert set(refusals) <= {CLOSE_TOO_MANY_SOCKETS}
