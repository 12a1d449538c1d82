"""The keyset cursor of `GET /tasks/`: where the last page ended, opaque to clients.

A cursor is the sort it belongs to and the last row's place in it (its sort key and id),
as base64url JSON. Clients only pass back what `next_cursor` gave them; anything else
(tampered, truncated, from another sort) is refused with 422, never guessed at.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_CURSOR_LENGTH = 1024
_MAX_ID = 2**63 - 1
_RANKS = {"priority": 4, "status": 3}


class InvalidCursor(ValueError):
    """The cursor is not one this service issued for this sort."""


@dataclass(frozen=True, slots=True)
class Position:
    """The last row of a page: its sort key (None only for a task without a due date, sorted
    by due date) and id."""

    sort_by: str
    sort_order: str
    key: Any
    id: int


def encode_cursor(position: Position) -> str:
    key = position.key.isoformat() if isinstance(position.key, datetime) else position.key
    raw = json.dumps(
        [position.sort_by, position.sort_order, key, position.id], separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, *, sort_by: str, sort_order: str) -> Position:
    """The position in `cursor`, checked against the sort of the request it came with."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursor("cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc
    if not isinstance(fields, list) or len(fields) != 4:
        raise InvalidCursor("cursor is not one this API issued")
    cursor_sort, cursor_order, key, task_id = fields
    if (cursor_sort, cursor_order) != (sort_by, sort_order):
        raise InvalidCursor("cursor belongs to another sort_by/sort_order")
    if type(task_id) is not int or not 1 <= task_id <= _MAX_ID:
        raise InvalidCursor("cursor is not one this API issued")
    return Position(sort_by, sort_order, _key(sort_by, key), task_id)


def _key(sort_by: str, key: Any) -> Any:
    if sort_by in _RANKS:
        if type(key) is int and 0 <= key < _RANKS[sort_by]:
            return key
    elif sort_by == "title":
        if isinstance(key, str) and len(key) <= MAX_CURSOR_LENGTH and "\x00" not in key:
            return key
    elif sort_by == "due_date" and key is None:
        return None
    elif isinstance(key, str):
        try:
            moment = datetime.fromisoformat(key)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment
    raise InvalidCursor("cursor is not one this API issued")
