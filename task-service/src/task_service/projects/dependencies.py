"""Request dependencies of the projects routes: the service over a pooled connection (reads)
or over the request's transaction (writes)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends
from taskflow_kit.db import ConnectionDep, TransactionDep

from task_service.projects.service import ProjectService
from task_service.state import State, StateDep


def _project_service(state: State, connection: asyncpg.Connection) -> ProjectService:
    return ProjectService(connection, user_client=state.user_client, outbox=state.outbox)


async def get_project_reader(state: StateDep, connection: ConnectionDep) -> ProjectService:
    return _project_service(state, connection)


async def get_project_writer(state: StateDep, connection: TransactionDep) -> ProjectService:
    return _project_service(state, connection)


ProjectReaderDep = Annotated[ProjectService, Depends(get_project_reader)]
ProjectWriterDep = Annotated[ProjectService, Depends(get_project_writer)]
