"""Request and response shapes of the tasks API, with the input normalisation rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from task_service.tasks.cursor import MAX_CURSOR_LENGTH, Position, decode_cursor
from task_service.tasks.models import TaskPriority, TaskStatus

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
MAX_TAGS = 20
MAX_DEPENDENCIES_ON_CREATE = 50
MAX_ID = 2**63 - 1
DEPENDENCIES_DEFAULT_LIMIT = 50
DEPENDENCIES_MAX_LIMIT = 200


# The frontend's spellings of the same states.
STATUS_ALIASES = {"pending": TaskStatus.TODO, "completed": TaskStatus.DONE}


def normalise_status(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        return STATUS_ALIASES.get(lowered, lowered)
    return value


def as_utc(value: datetime) -> datetime:
    """A naive datetime is UTC; an aware one is converted to UTC (a value that leaves
    datetime's range once converted, such as 9999-12-31T23:59:59-05:00, is invalid)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date is out of range once converted to UTC") from None


_NUMBER = re.compile(r"\s*[-+]?\d+(\.\d*)?([eE][-+]?\d+)?\s*")


def iso_datetime_only(value: Any) -> Any:
    """Refuse numbers (pydantic would read them as Unix timestamps): the schema says
    `format: date-time`, so validation says so too."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date-time")
    return value


def normalise_tags(tags: list[str]) -> list[str]:
    """Trimmed, lower-cased, without empties or duplicates, first spelling order kept."""
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = tag.strip().lower()
        if cleaned:
            seen.setdefault(cleaned, None)
    if len(seen) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return list(seen)


def no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it at the edge instead of failing in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def unique_ids(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


StatusInput = Annotated[TaskStatus, BeforeValidator(normalise_status)]
UtcDatetime = Annotated[datetime, BeforeValidator(iso_datetime_only), AfterValidator(as_utc)]
QueryDatetime = Annotated[datetime, BeforeValidator(iso_datetime_only)]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_nul),
]
Description = Annotated[str, Field(max_length=10_000), AfterValidator(no_nul)]
Tag = Annotated[str, StringConstraints(max_length=50), AfterValidator(no_nul)]
Tags = Annotated[list[Tag], Field(max_length=100), AfterValidator(normalise_tags)]
# Ids in a JSON body are JSON integers: `true` or `"7"` is refused rather than coerced (`true` would
# otherwise become user 1). Query strings are parsed from text, so the filter takes `IdParam`.
UserId = Annotated[int, Strict(), Field(ge=1, le=MAX_ID)]
TaskId = Annotated[int, Strict(), Field(ge=1, le=MAX_ID)]
ProjectId = Annotated[int, Strict(), Field(ge=1, le=MAX_ID)]
IdParam = Annotated[int, Field(ge=1, le=MAX_ID)]


def resolve_status(
    current: TaskStatus | None, status: TaskStatus | None, is_completed: bool | None
) -> TaskStatus | None:
    """The status a write asks for, from `status` and/or the `is_completed` shorthand.

    `is_completed: true` means done; `false` moves a done task back to todo and leaves an
    unfinished one as it is. Contradicting values are refused. None: no status change asked.
    """
    if is_completed is None:
        return status
    if status is not None:
        if (status is TaskStatus.DONE) != is_completed:
            raise ValueError("status and is_completed contradict each other")
        return status
    if is_completed:
        return TaskStatus.DONE
    if current is None or current is TaskStatus.DONE:
        return TaskStatus.TODO
    return current


class TaskCreate(BaseModel):
    """A new task. `owner_id`, `id`, `version` and timestamps are set by the server."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description | None = None
    status: StatusInput | None = None
    priority: TaskPriority = TaskPriority.MEDIUM
    is_completed: StrictBool | None = None  # `0`/`1` are not booleans, as the spec says
    due_date: UtcDatetime | None = None
    tags: Tags = Field(default_factory=list)
    assignee_id: UserId | None = None
    project_id: ProjectId | None = Field(
        default=None,
        description="Create the task in this project (members only: 404 otherwise). It stays "
        "there: a task does not move between projects.",
    )
    depends_on: Annotated[
        list[TaskId], Field(max_length=MAX_DEPENDENCIES_ON_CREATE), AfterValidator(unique_ids)
    ] = Field(default_factory=list)

    @model_validator(mode="after")
    def _status_agrees(self) -> TaskCreate:
        self.status = resolve_status(None, self.status, self.is_completed) or TaskStatus.TODO
        self.is_completed = None
        return self


class TaskUpdate(BaseModel):
    """A partial update (both `PUT` and `PATCH`): only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    # SkipJsonSchema: absent is fine, null is not (the schema says so; the validator enforces it).
    title: Title | SkipJsonSchema[None] = None
    description: Description | None = None
    status: StatusInput | SkipJsonSchema[None] = None
    priority: TaskPriority | SkipJsonSchema[None] = None
    is_completed: StrictBool | SkipJsonSchema[None] = None
    due_date: UtcDatetime | None = None
    tags: Tags | SkipJsonSchema[None] = None
    assignee_id: UserId | None = None

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> TaskUpdate:
        for name in ("title", "priority", "tags", "status", "is_completed"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if self.status is not None and self.is_completed is not None:
            resolve_status(None, self.status, self.is_completed)
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, except the status shorthands (resolved by the service)."""
        return {
            name: getattr(self, name)
            for name in self.model_fields_set
            if name not in ("status", "is_completed")
        }


class TaskRead(BaseModel):
    """The Task shape every route returns."""

    id: int
    title: str
    description: str | None
    status: TaskStatus
    priority: TaskPriority
    is_completed: bool
    due_date: datetime | None
    tags: list[str]
    owner_id: int
    assignee_id: int | None
    # Defaulted: a replayed answer stored before projects existed has no such key.
    project_id: int | None = Field(
        default=None, description="The project the task belongs to; null for a personal task"
    )
    depends_on: list[int]
    blocked: bool
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    version: int


class TaskList(BaseModel):
    """One page of tasks. `next_cursor` (null on the last page) fetches the next one at any
    depth for the same cost; `total` is exact when `total_exact`, otherwise a lower bound
    (docs/api.md: counting stops at 10,000 matches for the filters that are not kept counted)."""

    tasks: list[TaskRead]
    total: int
    skip: int
    limit: int
    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` (same sort and filters) for the next page; null on the last",
    )
    total_exact: bool = Field(
        default=True,
        description="false: `total` is a lower bound (counting stopped at 1,000 matches)",
    )


class DependencyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depends_on_id: TaskId


class TaskDependencies(BaseModel):
    """Both directions: what this task waits for, and what waits for it (visible tasks only),
    each the first `limit` by id, with the number in all."""

    depends_on: list[TaskRead]
    dependents: list[TaskRead]
    depends_on_total: int
    dependents_total: int
    limit: int


class DependencyTreeNode(BaseModel):
    """One task in a dependency tree. A task the caller cannot see shows only its id and status."""

    id: int
    visible: bool
    title: str | None
    status: TaskStatus
    priority: TaskPriority | None
    is_completed: bool
    blocked: bool
    # True when the node has dependencies that the depth limit left out.
    truncated: bool
    dependencies: list[DependencyTreeNode]


SortField = Literal["created_at", "updated_at", "due_date", "priority", "title", "status"]
SortOrder = Literal["asc", "desc"]
Scope = Literal["all", "owned", "assigned"]


class TaskFilter(BaseModel):
    """Listing parameters after parsing: what `GET /tasks/` filters, sorts and pages by."""

    statuses: list[StatusInput] = Field(default_factory=list)
    priorities: list[TaskPriority] = Field(default_factory=list)
    tags: Tags = Field(default_factory=list)
    search: Annotated[str, Field(max_length=200), AfterValidator(no_nul)] | None = None
    assignee_id: IdParam | None = None
    project_id: IdParam | None = None
    scope: Scope = "all"
    due_before: UtcDatetime | None = None
    due_after: UtcDatetime | None = None
    overdue: bool | None = None
    sort_by: SortField = "created_at"
    sort_order: SortOrder = "desc"
    skip: Annotated[int, Field(ge=0, le=MAX_ID)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    cursor: Annotated[str, Field(max_length=MAX_CURSOR_LENGTH)] | None = None

    @field_validator("cursor")
    @classmethod
    def _cursor_fits_the_sort(cls, cursor: str | None, info: ValidationInfo) -> str | None:
        if cursor is not None:
            decode_cursor(
                cursor,
                sort_by=info.data.get("sort_by", ""),
                sort_order=info.data.get("sort_order", ""),
            )
        return cursor

    def position(self) -> Position | None:
        """Where the page starts: after the row the cursor names (None: at the beginning)."""
        if self.cursor is None:
            return None
        return decode_cursor(self.cursor, sort_by=self.sort_by, sort_order=self.sort_order)
