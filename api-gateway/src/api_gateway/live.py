"""Live updates: the WebSocket `GET /api/v1/ws` and the hub that fans task events out to it.

Protocol (docs/api.md, "Live updates"):
- authenticate with a first message `{"token": "..."}` within `auth_timeout` seconds; `?token=`
  still works while `query_token` is on (the published contract lists it, so existing clients
  keep working; a URL can end up in a proxy's log or a browser's history, which is why the web
  app never uses it, our access log records the path without the query, and operators whose
  clients all send the first message turn it off); a missing, invalid, expired or revoked token
  closes the socket with 1008 before any event is sent;
- a client message larger than `max_message_bytes` (the protocol's are under 5 KiB) closes the
  socket with 1009, a binary one with 1003; a user with `max_sockets_per_user` sockets open on
  this replica is refused another with 4429 (close one first: each tab holds one);
- the server sends `{"type": "ready", "user_id": ...}`, then every `task.*` and `project.*`
  event envelope meant for the user (the event's `audience`: a project's members, or a personal
  task's owner and assignee), `{"type": "task.access_lost", ...}` to an assignee who was removed,
  `{"type": "project.access_lost", ...}` to a member removed from a project, and
  `{"type": "heartbeat"}` every `heartbeat` seconds; `{"type": "ping"}` from the client is
  answered `{"type": "pong"}`;
- a client that falls `queue_size` messages behind is closed with 1013 (reconnect and
  re-sync) instead of growing the gateway's memory; token expiry or revocation closes with
  1008; shutdown closes with 1001.

Every gateway replica follows the task stream itself (no consumer group: fan-out), so a
client connected to any replica receives every event meant for it; a replica with no socket
open pauses following it (every write of the API makes an event, and reading each one costs a
busy gateway ≈ 5% of its CPU), and the first socket to come resumes it from the stream's end
before it is sent `ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi.routing import APIWebSocketRoute
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from taskflow_kit.auth import Principal, TokenVerifier
from taskflow_kit.background import wait_for_up_to
from taskflow_kit.consumer import StreamTail
from taskflow_kit.errors import Unauthorized
from taskflow_kit.events import TASK_STREAM, Event, stream_key
from taskflow_kit.revocation import Revocation

logger = structlog.get_logger("api_gateway.live")

WS_PATH = "/api/v1/ws"
CLOSE_POLICY = 1008  # bad, expired or revoked token
CLOSE_TRY_AGAIN = 1013  # fell behind: reconnect and re-sync
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003  # a binary frame
CLOSE_TOO_BIG = 1009  # a client message over the size cap
CLOSE_TOO_MANY_SOCKETS = 4429  # the user already holds the most sockets allowed

CONNECTIONS = Gauge("taskflow_ws_connections", "Open live-update WebSockets")
MESSAGES = Counter("taskflow_ws_messages_total", "Messages queued to WebSockets", ["type"])
DROPPED = Counter("taskflow_ws_slow_clients_total", "WebSockets closed for falling behind")
REFUSED = Counter(
    "taskflow_ws_refused_total", "WebSockets closed by a cap or a bad token", ["reason"]
)


class _Refused(Exception):
    """A client message the protocol does not allow: close the socket with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass(eq=False)
class LiveConnection:
    """One authenticated socket: its owner, its token's lifetime and its outgoing queue."""

    principal: Principal
    queue_size: int
    queue: asyncio.Queue[str] = field(init=False)
    closing: tuple[int, str] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    @property
    def user_id(self) -> int:
        return self.principal.id

    def offer(self, message: str) -> None:
        if self.closing is not None:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            DROPPED.inc()
            self.close(CLOSE_TRY_AGAIN, "too far behind; reconnect and re-sync")
            return
        self.wake.set()

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
        self.wake.set()


def recipients(data: Mapping[str, Any]) -> set[int]:
    """Who an event is for. task-service computes the `audience` in the transaction that made
    the change (a project's members as it left them; a personal task's owner and assignee), so
    deciding needs no lookup here; an event from before audiences existed falls back to the
    task's owner and assignee."""
    audience = data.get("audience")
    if isinstance(audience, list):
        return {int(user_id) for user_id in audience}
    return {int(value) for name in ("owner_id", "assignee_id") if (value := data.get(name))}


class LiveHub:
    """Follows the task stream and routes each event to the sockets of the users it concerns
    (a project's members, a personal task's owner and assignee)."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        verifier: TokenVerifier,
        queue_size: int = 256,
        heartbeat: float = 20.0,
        auth_timeout: float = 10.0,
        max_message_bytes: int = 8192,
        max_sockets_per_user: int = 20,
        query_token: bool = True,
    ) -> None:
        self.verifier = verifier
        self.query_token = query_token
        self.max_message_bytes = max_message_bytes
        self.max_sockets_per_user = max_sockets_per_user
        self.queue_size = queue_size
        self.heartbeat = heartbeat
        self.auth_timeout = auth_timeout
        self.connections: dict[int, set[LiveConnection]] = defaultdict(set)
        self.tail = StreamTail(
            redis, streams=[stream_key(key_prefix, TASK_STREAM)], handler=self.deliver, name="live"
        )
        self.tail.pause()  # until the first socket

    def status(self) -> dict[str, object]:
        """Open sockets on this replica; whether the task stream is read without failing
        (`following`), and whether reading it is paused for want of sockets."""
        return {
            "connections": sum(len(group) for group in self.connections.values()),
            "following": self.tail.healthy,
            "paused": self.tail.paused,
        }

    # -- events in ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Note where the stream ends now. The tail stays paused until the first socket, whose
        `resume()` notes the end again; this position is only where reading starts if that
        cannot be read (Redis failing then)."""
        with contextlib.suppress(Exception):
            await wait_for_up_to(self.tail.start(), 2.0)

    async def run(self) -> None:
        beat = asyncio.create_task(self._heartbeats())
        try:
            await self.tail.run()
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self.close_all(CLOSE_GOING_AWAY, "gateway shutting down")

    async def deliver(self, event: Event) -> None:
        # No socket on this replica: nothing to route or encode (every write of the API makes
        # an event, so this is on the path of a busy gateway's writes).
        if not self.connections or not event.type.startswith(("task.", "project.")):
            return
        data = event.data
        audience = recipients(data)
        message = json.dumps(event.envelope(), separators=(",", ":"))
        for user_id in audience:
            self._send(user_id, message, event.type)
        previous = data.get("previous_assignee_id")
        if previous is not None and int(previous) not in audience:
            lost = {
                "type": "task.access_lost",
                "id": event.id,
                "subject_id": event.subject_id,
                "occurred_at": event.occurred_at.isoformat(),
            }
            self._send(int(previous), json.dumps(lost), "task.access_lost")
        if event.type == "project.member_removed" and data.get("user_id") is not None:
            left: dict[str, Any] = {
                "type": "project.access_lost",
                "id": event.id,
                "project_id": data.get("project_id"),
                "reason": data.get("reason"),
                "occurred_at": event.occurred_at.isoformat(),
            }
            self._send(int(data["user_id"]), json.dumps(left), "project.access_lost")

    def revoked(self, revocation: Revocation) -> None:
        """A revocation was read (RevocationListener callback): close the sockets it voids."""
        revocations = self.verifier.revocations
        if revocations is None:
            return
        for connection in self._all():
            principal = connection.principal
            if revocations.is_revoked(principal.id, principal.issued_at, principal.session_id):
                connection.close(CLOSE_POLICY, "token revoked")

    def _send(self, user_id: int, message: str, kind: str) -> None:
        for connection in list(self.connections.get(user_id, ())):
            connection.offer(message)
            MESSAGES.labels(kind).inc()

    def _all(self) -> list[LiveConnection]:
        return [c for group in self.connections.values() for c in group]

    def close_all(self, code: int, reason: str) -> None:
        for connection in self._all():
            connection.close(code, reason)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            message = json.dumps({"type": "heartbeat", "at": _now_iso()})
            for connection in self._all():
                connection.offer(message)

    # -- one socket --------------------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        principal = await self._authenticate(websocket)
        if principal is None:
            return
        # Every event published after `ready` reaches the socket: the stream is followed from
        # here on (and no await comes between the cap's count and `ready`).
        await self.tail.resume()
        if len(self.connections.get(principal.id, ())) >= self.max_sockets_per_user:
            REFUSED.labels("too_many_sockets").inc()
            await websocket.close(
                CLOSE_TOO_MANY_SOCKETS,
                f"at most {self.max_sockets_per_user} live sockets per user; close one first",
            )
            return
        connection = LiveConnection(principal, self.queue_size)
        self.connections[principal.id].add(connection)
        CONNECTIONS.inc()
        connection.offer(json.dumps({"type": "ready", "user_id": principal.id}))
        receiver = asyncio.create_task(self._receive(websocket, connection))
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, principal.expires_at - time.time()),
            connection.close,
            CLOSE_POLICY,
            "token expired",
        )
        try:
            await self._send_loop(websocket, connection)
        finally:
            expiry.cancel()
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
            self.connections[principal.id].discard(connection)
            if not self.connections[principal.id]:
                del self.connections[principal.id]
                if not self.connections:
                    self.tail.pause()
            CONNECTIONS.dec()

    async def _receive_text(self, websocket: WebSocket) -> str:
        """The client's next message; `_Refused` for a binary or oversized one."""
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            raise _Refused(CLOSE_UNSUPPORTED, "text frames only")
        if len(text) > self.max_message_bytes or len(text.encode()) > self.max_message_bytes:
            raise _Refused(CLOSE_TOO_BIG, f"messages are at most {self.max_message_bytes} bytes")
        return str(text)

    async def _authenticate(self, websocket: WebSocket) -> Principal | None:
        token = websocket.query_params.get("token") if self.query_token else None
        try:
            if not token:
                token = await self._first_message_token(websocket)
        except _Refused as refused:
            REFUSED.labels("message").inc()
            await websocket.close(refused.code, refused.reason)
            return None
        if not token:
            REFUSED.labels("token").inc()
            await websocket.close(CLOSE_POLICY, 'authenticate with {"token": ...} first')
            return None
        try:
            return self.verifier.principal(token)
        except Unauthorized as exc:
            REFUSED.labels("token").inc()
            await websocket.close(CLOSE_POLICY, exc.detail[:120])
            return None

    async def _first_message_token(self, websocket: WebSocket) -> str | None:
        received: list[str] = []

        async def first() -> None:
            received.append(await self._receive_text(websocket))

        try:
            if not await wait_for_up_to(first(), self.auth_timeout):
                return None
            body = json.loads(received[0])
        except (WebSocketDisconnect, ValueError, RuntimeError):
            return None
        token = body.get("token") if isinstance(body, dict) else None
        return token if isinstance(token, str) and token else None

    async def _receive(self, websocket: WebSocket, connection: LiveConnection) -> None:
        """Reads the client's messages: pings are answered, a disconnect ends the socket."""
        try:
            while True:
                text = await self._receive_text(websocket)
                with contextlib.suppress(ValueError, AttributeError):
                    if json.loads(text).get("type") == "ping":
                        connection.offer(json.dumps({"type": "pong"}))
        except (WebSocketDisconnect, RuntimeError):
            connection.close(1000, "client went away")
        except _Refused as refused:
            REFUSED.labels("message").inc()
            connection.close(refused.code, refused.reason)

    @staticmethod
    async def _send_loop(websocket: WebSocket, connection: LiveConnection) -> None:
        while True:
            while not connection.queue.empty() and connection.closing is None:
                await websocket.send_text(connection.queue.get_nowait())
            if connection.closing is not None:
                code, reason = connection.closing
                if websocket.application_state is WebSocketState.CONNECTED and code != 1000:
                    with contextlib.suppress(Exception):
                        await websocket.close(code, reason)
                return
            connection.wake.clear()
            if connection.queue.empty() and connection.closing is None:
                await connection.wake.wait()


def live_route(hub: LiveHub) -> APIWebSocketRoute:
    """The `/api/v1/ws` route, served by `hub`. FastAPI's route type, because FastAPI's router
    records the matched route in the scope only for its own routes (the metrics' label)."""

    async def live_updates(websocket: WebSocket) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await hub.serve(websocket)

    return APIWebSocketRoute(WS_PATH, live_updates, name="live_updates")
