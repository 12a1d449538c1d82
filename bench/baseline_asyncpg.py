"""The raw-asyncpg baseline: the cheapest honest way to serve task-service's `GET /tasks/{id}`.

A minimal FastAPI app (one route, no middleware, no ORM, no auth) on the same uvicorn
(uvloop + httptools) and the same database, running the same row query as task-service (the task
if the caller owns it or is its assignee) over an asyncpg pool of the same size as task-service's
SQLAlchemy pool (10 kept + 10 overflow). The caller is `?user=<id>` instead of a token.

    BASELINE_DATABASE_URL=postgresql://... uvicorn baseline_asyncpg:app --app-dir bench
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request

# taskflow_kit.db.create_engine's defaults: pool_size=10, max_overflow=10.
POOL_MIN, POOL_MAX = 10, 20
QUERY = """
SELECT id, title, description, status, priority, due_date, tags, owner_id, assignee_id,
       created_at, updated_at, completed_at, version
FROM task
WHERE id = $1 AND (owner_id = $2 OR assignee_id = $2)
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    url = os.environ["BASELINE_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    app.state.pool = await asyncpg.create_pool(url, min_size=POOL_MIN, max_size=POOL_MAX)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/tasks/{task_id}")
async def get_task(task_id: int, user: int, request: Request) -> dict[str, Any]:
    row = await request.app.state.pool.fetchrow(QUERY, task_id, user)
    if row is None:
        raise HTTPException(404, "task not found")
    task = dict(row)
    task["is_completed"] = task["status"] == "done"
    return task
