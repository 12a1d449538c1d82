"""user-service runs under the least-privilege database roles of the Kubernetes manifests: the
migration role applies the migrations, the service's role registers and logs people in, and
may not change the schema (so an SQL injection or a stolen service password cannot either)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url
from taskflow_kit.db import asyncpg_dsn
from taskflow_kit.migrations import drop_database, ensure_database, prepare_database
from taskflow_kit.testing import serving, test_database_server_url
from user_service.config import ALEMBIC_INI, Settings
from user_service.main import create_app

DATASTORES = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "30-datastores.yaml"


def roles_sql() -> str:
    for document in yaml.safe_load_all(DATASTORES.read_text()):
        if document["kind"] == "ConfigMap" and document["metadata"]["name"] == "taskflow-db-roles":
            return str(document["data"]["roles.sql"])
    raise AssertionError("no taskflow-db-roles ConfigMap")


def render(sql: str, variables: dict[str, str]) -> str:
    """psql's `:"name"` (identifier) and `:'name'` (literal) variables, as `psql -v` fills them."""
    sql = re.sub(r':"(\w+)"', lambda m: '"' + variables[m.group(1)] + '"', sql)
    return re.sub(r":'(\w+)'", lambda m: "'" + variables[m.group(1)] + "'", sql)


@pytest.fixture
async def role_urls() -> AsyncIterator[tuple[str, str]]:
    """(migration URL, service URL) of a fresh database set up by the manifests' roles SQL."""
    suffix = uuid.uuid4().hex[:10]
    database = f"tf_users_roles_{suffix}"
    roles = {"migration_role": f"tf_migration_{suffix}", "service_role": f"tf_service_{suffix}"}
    server = make_url(test_database_server_url())
    admin_url = server.set(database=database).render_as_string(hide_password=False)
    await ensure_database(admin_url)
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await admin.execute(
            render(
                roles_sql(),
                {
                    **roles,
                    "database": database,
                    "migration_password": uuid.uuid4().hex,
                    "service_password": uuid.uuid4().hex,
                },
            )
        )
    finally:
        await admin.close()

    def url(role: str) -> str:
        return server.set(database=database, username=role).render_as_string(hide_password=False)

    try:
        yield url(roles["migration_role"]), url(roles["service_role"])
    finally:
        await drop_database(admin_url)
        cleanup = await asyncpg.connect(asyncpg_dsn(test_database_server_url()))
        try:
            for role in roles.values():
                await cleanup.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await cleanup.close()


async def test_the_service_role_serves_requests_but_cannot_change_the_schema(
    role_urls: tuple[str, str], settings: Settings
) -> None:
    migration_url, service_url = role_urls
    await prepare_database(ALEMBIC_INI, migration_url)

    app = create_app(settings.model_copy(update={"database_url": service_url}))
    async with serving(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = {"username": "least", "email": "least@example.com", "password": "a password!"}
            registered = await client.post("/api/v1/auth/register", json=body)
            login = await client.post(
                "/api/v1/auth/login", json={"username": "least", "password": "a password!"}
            )
            refreshed = await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
            )
    assert (registered.status_code, login.status_code, refreshed.status_code) == (201, 200, 200)

    service = await asyncpg.connect(asyncpg_dsn(service_url))
    try:
        for statement in (
            "CREATE TABLE stolen (id int)",
            "DROP TABLE refresh_token",
            "ALTER TABLE user_account ADD COLUMN backdoor text",
            "TRUNCATE user_account CASCADE",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await service.execute(statement)
    finally:
        await service.close()
