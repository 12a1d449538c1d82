"""Request dependencies of the projects routes: the service over a pooled connection (reads)
or over the request's transaction (writes)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from taskflow_kit.db import ConnectionDep, TransactionDep

from task_service.projects.service import ProjectService


def _project_service(request: Request, connection: asyncpg.Connection) -> ProjectService:
    state = request.app.state
    return ProjectService(connection, user_client=state.user_client, outbox=state.outbox)


async def get_project_reader(request: Request, connection: ConnectionDep) -> ProjectService:
    return _project_service(request, connection)


async def get_project_writer(request: Request, connection: TransactionDep) -> ProjectService:
    return _project_service(request, connection)


ProjectReaderDep = Annotated[ProjectService, Depends(get_project_reader)]
ProjectWriterDep = Annotated[ProjectService, Depends(get_project_writer)]
