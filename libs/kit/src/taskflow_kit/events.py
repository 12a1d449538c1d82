"""Domain events: the envelope every service publishes, and the names of the streams.

An event is written to the producing service's `outbox` table in the same transaction as the
change it describes (`taskflow_kit.outbox`), then published to a Redis Stream by the relay and
read by consumers (`taskflow_kit.consumer`). Delivery is at least once; consumers deduplicate by
`id`, so the effect of each event happens once.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Each stream entry has one field holding the JSON envelope.
EVENT_FIELD = "event"

USER_STREAM = "user"
TASK_STREAM = "task"


class InvalidEvent(ValueError):
    """A stream entry that is not an event envelope (it goes straight to the dead letters)."""


def stream_key(prefix: str, stream: str) -> str:
    """The Redis key of a stream, e.g. `taskflow:events:task`."""
    return f"{prefix}events:{stream}"


def dead_letter_key(prefix: str, group: str) -> str:
    """Where a consumer group puts the events it gave up on."""
    return f"{prefix}events:dead:{group}"


def backlog_key(prefix: str) -> str:
    """A hash of producer → events committed but not yet published (written by the relays)."""
    return f"{prefix}events:backlog"


def epoch_key(prefix: str, producer: str) -> str:
    """Set by a producer's relay once every event its outbox still holds is in Redis. A Redis
    that lost its data has no such key: the relay then sends those events again, and readers
    of what the events built (the revocation hashes) know the copy is incomplete until then."""
    return f"{prefix}events:epoch:{producer}"


@dataclass(frozen=True, slots=True)
class Event:
    """`{id, type, occurred_at, producer, subject_id, data}`; `subject_id` is the id of what
    changed (the task, the user), and events of one subject are published in commit order."""

    type: str
    producer: str
    subject_id: str
    data: Mapping[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def envelope(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "producer": self.producer,
            "subject_id": self.subject_id,
            "data": dict(self.data),
        }

    def to_json(self) -> str:
        return json.dumps(self.envelope(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise TypeError("the envelope is not a JSON object")
            # Strings and an object as the contract says: `str()` or `dict()` would turn a null
            # or a list of pairs into something that only looks like an event.
            for key in ("id", "type", "producer", "subject_id", "occurred_at"):
                if not isinstance(body[key], str):
                    raise TypeError(f"{key} is not a string")
            if not isinstance(body["data"], dict):
                raise TypeError("data is not an object")
            occurred_at = dt.datetime.fromisoformat(body["occurred_at"])
            event = cls(
                id=str(uuid.UUID(body["id"])),
                type=body["type"],
                producer=body["producer"],
                subject_id=body["subject_id"],
                data=body["data"],
                occurred_at=occurred_at,
            )
        # RecursionError: JSON nested deeper than the parser goes (a poison entry, not a crash).
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise InvalidEvent(f"not an event envelope: {exc}") from exc
        if occurred_at.tzinfo is None:
            raise InvalidEvent("occurred_at has no offset")
        return event
