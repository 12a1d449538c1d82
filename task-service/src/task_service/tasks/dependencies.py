"""Request dependencies of the tasks routes: the services, listing parameters, If-Match.

All async (a sync dependency costs a thread-pool hop per request). A route that reads gets its
service over a pooled connection with no transaction; a route that writes, over one
transaction that the kit's `get_transaction` commits before the response."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Header, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from taskflow_kit.db import ConnectionDep, TransactionDep

from task_service.state import State, StateDep
from task_service.tasks.graph_service import DependencyService
from task_service.tasks.idempotency import TaskCreation
from task_service.tasks.idempotency_repository import IdempotencyRepository
from task_service.tasks.schemas import (
    DEFAULT_LIMIT,
    MAX_ID,
    MAX_LIMIT,
    QueryDatetime,
    Scope,
    SortField,
    SortOrder,
    TaskFilter,
)
from task_service.tasks.service import IfMatch, TaskService


def _task_service(state: State, connection: asyncpg.Connection) -> TaskService:
    return TaskService(connection, user_client=state.user_client, outbox=state.outbox)


async def get_task_reader(state: StateDep, connection: ConnectionDep) -> TaskService:
    return _task_service(state, connection)


async def get_task_writer(state: StateDep, connection: TransactionDep) -> TaskService:
    return _task_service(state, connection)


async def get_task_creation(state: StateDep, connection: TransactionDep) -> TaskCreation:
    return TaskCreation(_task_service(state, connection), IdempotencyRepository(connection))


async def get_dependency_reader(state: StateDep, connection: ConnectionDep) -> DependencyService:
    return DependencyService(_task_service(state, connection))


async def get_dependency_writer(state: StateDep, connection: TransactionDep) -> DependencyService:
    return DependencyService(_task_service(state, connection))


def _split(values: list[str] | None) -> list[str]:
    """Repeated parameters, each of which may also be comma-separated."""
    return [part for value in values or [] for part in value.split(",") if part.strip()]


async def get_task_filter(
    status: Annotated[
        list[str] | None,
        Query(description="todo, in_progress or done (pending/completed accepted); repeatable"),
    ] = None,
    priority: Annotated[
        list[str] | None, Query(description="low, medium, high or urgent; repeatable")
    ] = None,
    tags: Annotated[
        str | None, Query(description="Comma-separated; a task must carry all of them")
    ] = None,
    search: Annotated[
        str | None, Query(description="Case-insensitive substring of title or description")
    ] = None,
    assignee_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    project_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="One project's tasks (members only, 404 otherwise)"),
    ] = None,
    scope: Annotated[
        Scope,
        Query(
            description="all: every task I can see (mine, assigned to me, my projects'); "
            "owned: created by me; assigned: assigned to me"
        ),
    ] = "all",
    due_before: Annotated[
        QueryDatetime | None, Query(description="due_date < this (naive = UTC)")
    ] = None,
    due_after: Annotated[
        QueryDatetime | None, Query(description="due_date >= this (naive = UTC)")
    ] = None,
    overdue: Annotated[
        bool | None, Query(description="true: not done and due_date in the past")
    ] = None,
    sort_by: Annotated[SortField, Query(description="priority sorts by rank")] = "created_at",
    sort_order: Annotated[SortOrder, Query()] = "desc",
    skip: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Rows to skip (after `cursor`, if any)")
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, description=f"1..{MAX_LIMIT}; larger values are capped at {MAX_LIMIT}")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page, with the same sort_by, "
            "sort_order and filters: the next page at any depth for the cost of the first"
        ),
    ] = None,
) -> TaskFilter:
    try:
        return TaskFilter(
            statuses=_split(status),
            priorities=_split(priority),
            tags=(tags or "").split(","),
            search=(search or "").strip() or None,
            assignee_id=assignee_id,
            project_id=project_id,
            scope=scope,
            due_before=due_before,
            due_after=due_after,
            overdue=overdue,
            sort_by=sort_by,
            sort_order=sort_order,
            skip=skip,
            limit=min(limit, MAX_LIMIT),
            cursor=cursor,
        )
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        ) from exc


_MAX_VERSION_DIGITS = len(str(MAX_ID))


def parse_if_match(value: str | None) -> IfMatch:
    """`*` or no header: no precondition. Otherwise the versions named by the entity tags
    (`W/"3"`, `"3"` or a bare `3`); an unparseable tag matches nothing."""
    if value is None or value.strip() == "*":
        return None
    versions: set[int] = set()
    for tag in value.split(","):
        cleaned = tag.strip().removeprefix("W/").strip('"')
        # ASCII digits only (str.isdigit accepts "²"), and no longer than any version can be.
        if cleaned.isascii() and cleaned.isdigit() and len(cleaned) <= _MAX_VERSION_DIGITS:
            versions.add(int(cleaned))
    return frozenset(versions)


async def get_if_match(
    if_match: Annotated[
        str | None,
        Header(alias="If-Match", description='ETag of the version being changed, e.g. W/"3"'),
    ] = None,
) -> IfMatch:
    return parse_if_match(if_match)


def etag(version: int) -> str:
    return f'W/"{version}"'


TaskReaderDep = Annotated[TaskService, Depends(get_task_reader)]
TaskWriterDep = Annotated[TaskService, Depends(get_task_writer)]
TaskCreationDep = Annotated[TaskCreation, Depends(get_task_creation)]
DependencyReaderDep = Annotated[DependencyService, Depends(get_dependency_reader)]
DependencyWriterDep = Annotated[DependencyService, Depends(get_dependency_writer)]
TaskFilterDep = Annotated[TaskFilter, Depends(get_task_filter)]
IfMatchDep = Annotated[IfMatch, Depends(get_if_match)]
