from alembic import context
from task_service.config import Settings
from task_service.database import Base
from task_service.tasks import models  # noqa: F401  (registers the tables)
from taskflow_kit.migrations import run_env

run_env(context, Base.metadata, default_url=Settings().database_url)
