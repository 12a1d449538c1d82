"""The statements behind `GET /tasks/`, shaped so a page costs the same at any size and depth.

- Visibility (owner or assignee) is a UNION ALL of the owned tasks and those assigned by someone
  else: each branch is a range of an index led by its user column, merged in sort order, where
  an OR would read every visible row and sort them.
- Each sort is one key with constants only (models.*_SQL), the same expression the index on
  (owner_id, key, id) holds, compared as a row with the id: `(key, id) > (last key, last id)` is
  where a keyset page starts, read straight off the index.
- The page's ids are found first (from the index alone when it can), then only those rows are
  read with their dependencies: rows skipped by `skip` are never fetched.
- The total is the running counts of `task_tally` when the filter is one they keep (scope and
  status/priority only), otherwise a count that stops after TOTAL_CAP matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    and_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)
from taskflow_kit.repository import like_pattern

from task_service.aggregates.models import TaskTally
from task_service.tasks.cursor import Position
from task_service.tasks.models import (
    DUE_ASC_SQL,
    DUE_DESC_SQL,
    NOT_DONE,
    PRIORITY_RANK_SQL,
    STATUS_RANK_SQL,
    TITLE_KEY_SQL,
    Task,
    TaskStatus,
)
from task_service.tasks.schemas import TaskFilter

# Counting stops here for filters the running counts do not keep (docs/api.md, "total").
TOTAL_CAP = 10_000


def _key(sql: str) -> ColumnElement[Any]:
    return literal_column(f"({sql.format(t='task.')})")


_TIMESTAMP = DateTime(timezone=True)


def _due_bound(infinity: str) -> Any:
    def bound(value: Any) -> ColumnElement[Any]:
        return func.coalesce(
            cast(bindparam(None, value, type_=_TIMESTAMP), _TIMESTAMP),
            literal_column(f"CAST('{infinity}' AS timestamptz)"),
        )

    return bound


def _plain_bound(value: Any) -> ColumnElement[Any]:
    return bindparam(None, value)


@dataclass(frozen=True, slots=True)
class SortKey:
    """A sort's key as SQL, and the SQL for a cursor's key value compared with it."""

    expression: ColumnElement[Any]
    bound: Any = _plain_bound


_SORT_KEYS: dict[tuple[str, str], SortKey] = {
    **{
        (field, order): SortKey(getattr(Task, field).expression)
        for field in ("created_at", "updated_at")
        for order in ("asc", "desc")
    },
    # Tasks without a due date last in both directions: NULL reads as +infinity ascending and
    # as -infinity descending (the two indexes ix_task_owner_due_asc / _desc).
    ("due_date", "asc"): SortKey(_key(DUE_ASC_SQL), _due_bound("infinity")),
    ("due_date", "desc"): SortKey(_key(DUE_DESC_SQL), _due_bound("-infinity")),
    **{
        (field, order): SortKey(_key(sql))
        for field, sql in (
            ("priority", PRIORITY_RANK_SQL),
            ("status", STATUS_RANK_SQL),
            ("title", TITLE_KEY_SQL),
        )
        for order in ("asc", "desc")
    },
}


def sort_key(task_filter: TaskFilter) -> SortKey:
    return _SORT_KEYS[(task_filter.sort_by, task_filter.sort_order)]


def _visibility(task_filter: TaskFilter, user_id: int) -> list[list[ColumnElement[bool]]]:
    """The branches whose union is what the caller may list in this scope."""
    if task_filter.scope == "owned":
        return [[Task.owner_id == user_id]]
    if task_filter.scope == "assigned":
        return [[Task.assignee_id == user_id]]
    return [[Task.owner_id == user_id], [Task.assignee_id == user_id, Task.owner_id != user_id]]


def filter_conditions(task_filter: TaskFilter, now: datetime) -> list[ColumnElement[bool]]:
    """The filters, written so the owner-led indexes serve them."""
    conditions: list[ColumnElement[bool]] = []
    if task_filter.statuses:
        conditions.append(Task.status.in_([str(status) for status in task_filter.statuses]))
    if task_filter.priorities:
        conditions.append(Task.priority.in_([str(p) for p in task_filter.priorities]))
    if task_filter.tags:
        conditions.append(Task.tags.contains(task_filter.tags))
    if task_filter.search:
        pattern = like_pattern(task_filter.search)
        conditions.append(
            or_(
                Task.title.ilike(pattern, escape="\\"),
                Task.description.ilike(pattern, escape="\\"),
            )
        )
    if task_filter.assignee_id is not None:
        conditions.append(Task.assignee_id == task_filter.assignee_id)
    # `due_date < t` is `due key ascending < t` (a task without one sorts at +infinity), and
    # `due_date >= t` is `due key descending >= t`: the same rows, ranges of the due indexes.
    if task_filter.due_before is not None:
        conditions.append(_key(DUE_ASC_SQL) < task_filter.due_before)
    if task_filter.due_after is not None:
        conditions.append(_key(DUE_DESC_SQL) >= task_filter.due_after)
    if task_filter.overdue is True:
        conditions.append(and_(NOT_DONE, Task.due_date < now))
    elif task_filter.overdue is False:
        conditions.append(
            or_(Task.status == TaskStatus.DONE, Task.due_date.is_(None), Task.due_date >= now)
        )
    return conditions


def _after(key: SortKey, position: Position, descending: bool) -> ColumnElement[bool]:
    row = tuple_(key.expression, Task.id)
    last = tuple_(key.bound(position.key), bindparam(None, position.id))
    return row < last if descending else row > last


def page_statement(task_filter: TaskFilter, user_id: int, now: datetime) -> Select[Any]:
    """Ids and sort keys of the page (one row more than `limit`: is there a next page?)."""
    key = sort_key(task_filter)
    conditions = filter_conditions(task_filter, now)
    descending = task_filter.sort_order == "desc"
    position = task_filter.position()
    if position is not None:
        conditions.append(_after(key, position, descending))
    branches = [
        select(Task.id.label("id"), key.expression.label("sort_key")).where(*branch, *conditions)
        for branch in _visibility(task_filter, user_id)
    ]
    rows = (union_all(*branches) if len(branches) > 1 else branches[0]).subquery("visible")
    ordering = (rows.c.sort_key, rows.c.id)
    return (
        select(rows.c.id, rows.c.sort_key)
        .order_by(*(column.desc() if descending else column.asc() for column in ordering))
        .offset(task_filter.skip)
        .limit(task_filter.limit + 1)
    )


def tallied_total_statement(task_filter: TaskFilter, user_id: int) -> Select[Any] | None:
    """The exact total from the running counts, when the filter is one they keep."""
    untallied = (
        task_filter.tags
        or task_filter.search
        or task_filter.assignee_id is not None
        or task_filter.due_before is not None
        or task_filter.due_after is not None
        or task_filter.overdue is not None
        or task_filter.scope == "assigned"
    )
    if untallied:
        return None
    conditions: list[ColumnElement[bool]] = [TaskTally.user_id == user_id]
    if task_filter.scope == "owned":
        conditions.append(TaskTally.owned.is_(True))
    if task_filter.statuses:
        conditions.append(TaskTally.status.in_([str(status) for status in task_filter.statuses]))
    if task_filter.priorities:
        conditions.append(TaskTally.priority.in_([str(p) for p in task_filter.priorities]))
    return select(func.coalesce(func.sum(TaskTally.tasks), 0)).where(*conditions)


def capped_total_statement(task_filter: TaskFilter, user_id: int, now: datetime) -> Select[Any]:
    """How many tasks match, counting no further than TOTAL_CAP + 1."""
    conditions = filter_conditions(task_filter, now)
    branches = [
        select(literal(1).label("one")).where(*branch, *conditions).limit(TOTAL_CAP + 1)
        for branch in _visibility(task_filter, user_id)
    ]
    rows = (union_all(*branches) if len(branches) > 1 else branches[0]).subquery("matching")
    return select(func.count()).select_from(rows)


def next_position(
    task_filter: TaskFilter, last: Task, last_key: Any, more: bool
) -> Position | None:
    """The cursor position after `last` (the page's last row), if another page follows."""
    if not more:
        return None
    # A due-date key is ±infinity for a task without one: the cursor keeps the date itself.
    key = last.due_date if task_filter.sort_by == "due_date" else last_key
    return Position(task_filter.sort_by, task_filter.sort_order, key, last.id)
