"""The raw-asyncpg baselines: the cheapest honest way to serve task-service's `GET /tasks/{id}`
and `GET /tasks/?...` (filtered list) answers.

A minimal FastAPI app (no middleware, no ORM, no dependency beyond the path and query) on the
same uvicorn (uvloop + httptools) and the same database. Like task-service it verifies the
bearer token (PyJWT, HS256, the same secret, issuer, audience and required claims; on every
request, with no cache), runs the same SQL (the task with its dependency ids and blocked flag,
visible to the caller; for a list, the count and the page), over an asyncpg pool of the same
size as task-service's (10 kept, up to 20), and returns the same fields.

    BASELINE_DATABASE_URL=postgresql://... BASELINE_JWT_SECRET=... \
        uvicorn baseline_asyncpg:app --app-dir bench
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
from fastapi import FastAPI, HTTPException, Query, Request

# task-service's pool (taskflow_kit.db.create_pool's defaults).
POOL_MIN, POOL_MAX = 10, 20
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti", "type"]
COLUMNS = """
    t.id, t.title, t.description, t.status, t.priority, t.due_date, t.tags, t.owner_id,
    t.assignee_id, t.created_at, t.updated_at, t.completed_at, t.version,
    (SELECT array_agg(e.depends_on_id ORDER BY e.depends_on_id)
       FROM task_dependency e WHERE e.task_id = t.id) AS depends_on,
    EXISTS (SELECT 1 FROM task_dependency e JOIN task d ON d.id = e.depends_on_id
             WHERE e.task_id = t.id AND d.status <> 'done') AS blocked
"""
READ = f"SELECT {COLUMNS} FROM task t WHERE t.id = $1 AND (t.owner_id = $2 OR t.assignee_id = $2)"
SORT_KEYS = {
    "created_at": "t.created_at",
    "updated_at": "t.updated_at",
    "due_date": "t.due_date",
    "priority": "CASE t.priority WHEN 'low' THEN 0 WHEN 'medium' THEN 1 "
    "WHEN 'high' THEN 2 WHEN 'urgent' THEN 3 END",
    "status": "CASE t.status WHEN 'todo' THEN 0 WHEN 'in_progress' THEN 1 WHEN 'done' THEN 2 END",
    "title": 'lower(t.title) COLLATE "C"',
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    url = os.environ["BASELINE_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    app.state.pool = await asyncpg.create_pool(url, min_size=POOL_MIN, max_size=POOL_MAX)
    app.state.secret = os.environ["BASELINE_JWT_SECRET"]
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def caller(request: Request) -> int:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "not authenticated")
    try:
        claims = jwt.decode(
            token,
            request.app.state.secret,
            algorithms=["HS256"],
            audience="taskflow",
            issuer="taskflow",
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "invalid token") from exc
    if claims.get("type") != "access":
        raise HTTPException(401, "invalid token")
    return int(claims["sub"])


def as_task(row: asyncpg.Record) -> dict[str, Any]:
    task = dict(row)
    task["is_completed"] = task["status"] == "done"
    task["depends_on"] = task["depends_on"] or []
    return task


@app.get("/tasks/{task_id}")
async def get_task(task_id: int, request: Request) -> dict[str, Any]:
    user_id = caller(request)
    row = await request.app.state.pool.fetchrow(READ, task_id, user_id)
    if row is None:
        raise HTTPException(404, "task not found")
    return as_task(row)


@app.get("/tasks/")
async def list_tasks(
    request: Request,
    status: list[str] | None = Query(None),
    priority: list[str] | None = Query(None),
    tags: str | None = None,
    search: str | None = None,
    overdue: bool | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
    skip: int = 0,
    limit: int = 20,
) -> dict[str, Any]:
    """The filters the benchmark's frontend uses, as task-service applies them."""
    user_id = caller(request)
    where = ["(t.owner_id = $1 OR t.assignee_id = $1)"]
    args: list[Any] = [user_id]

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if status:
        where.append(f"t.status = ANY({param(status)}::varchar[])")
    if priority:
        where.append(f"t.priority = ANY({param(priority)}::varchar[])")
    if tags:
        where.append(f"t.tags @> {param([t.strip().lower() for t in tags.split(',')])}::text[]")
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = param(f"%{escaped}%")
        where.append(f"(t.title ILIKE {pattern} OR t.description ILIKE {pattern})")
    if overdue:
        where.append(f"t.status <> 'done' AND t.due_date < {param(datetime.now(UTC))}")
    condition = " AND ".join(where)
    direction = "ASC" if sort_order == "asc" else "DESC"
    order = f"{SORT_KEYS[sort_by]} {direction} NULLS LAST, t.id {direction}"
    page = (
        f"SELECT {COLUMNS} FROM task t WHERE {condition} ORDER BY {order} "
        f"OFFSET {param(skip)} LIMIT {param(min(limit, 100))}"
    )
    async with request.app.state.pool.acquire() as connection:
        total = await connection.fetchval(
            f"SELECT count(*) FROM task t WHERE {condition}",
            *args[: len(args) - 2],
        )
        rows = await connection.fetch(page, *args)
    return {"tasks": [as_task(row) for row in rows], "total": total, "skip": skip, "limit": limit}
