"""Static checks of the deployment files. They are also run for real: `make test-compose`
(podman) and `make lint` (compose spec, hadolint, workflow schema, Kubernetes schemas)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from taskflow_devstack.processes import WS_MAX_SIZE, uvicorn_command

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = {
    "user-service": ("user_service", 8001),
    "task-service": ("task_service", 8002),
    "stats-service": ("stats_service", 8003),
    "api-gateway": ("api_gateway", 8000),
}


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_builds_every_service_from_the_one_dockerfile(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    for name, (package, port) in SERVICES.items():
        build = services[name]["build"]
        assert build["context"] == "."
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
        assert build["args"] == {"SERVICE": name, "PACKAGE": package, "PORT": str(port)}
        assert (ROOT / name / "src" / package / "main.py").is_file()


def test_only_the_gateway_publishes_a_port(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    published = {name for name, spec in services.items() if spec.get("ports")}
    # Scaling with --scale needs services without fixed host ports.
    assert published == {"api-gateway"}
    # On loopback unless GATEWAY_BIND says otherwise: a bare `up` is not reachable from the network.
    ports = services["api-gateway"]["ports"]
    assert ports == ["${GATEWAY_BIND:-127.0.0.1}:${GATEWAY_PORT:-8000}:8000"]


SECRET_VARIABLES = (
    "JWT_SECRET",
    "POSTGRES_PASSWORD",
    "USERS_DB_MIGRATION_PASSWORD",
    "USERS_DB_SERVICE_PASSWORD",
    "TASKS_DB_MIGRATION_PASSWORD",
    "TASKS_DB_SERVICE_PASSWORD",
    "USER_SERVICE_REDIS_PASSWORD",
    "TASK_SERVICE_REDIS_PASSWORD",
    "STATS_SERVICE_REDIS_PASSWORD",
    "GATEWAY_REDIS_PASSWORD",
)
# Each service's Redis ACL user (deploy/k8s) and the variable holding its password.
REDIS_USERS = {
    "user-service": "USER_SERVICE_REDIS_PASSWORD",
    "task-service": "TASK_SERVICE_REDIS_PASSWORD",
    "stats-service": "STATS_SERVICE_REDIS_PASSWORD",
    "api-gateway": "GATEWAY_REDIS_PASSWORD",
}


def test_compose_has_no_default_secret_and_refuses_to_start_without_one() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRET_VARIABLES:
        uses = re.findall(r"\$\{" + name + r"(:?[-?][^}]*)?\}", text)
        assert uses, f"{name} is not used"
        # `${NAME:?message}` makes compose stop with the message when NAME is unset or empty.
        assert all(use.startswith(":?") for use in uses), (name, uses)


def test_each_service_is_its_own_redis_acl_user_as_in_kubernetes(
    compose: dict[str, object],
) -> None:
    """Issue 21 point 7: compose follows deploy/k8s's Redis ACL users (each service writes only
    its own keys and stream; the behaviour is tested on a real Redis in test_k8s_security)."""
    services = compose["services"]
    assert isinstance(services, dict)
    redis_spec = services["redis"]
    assert redis_spec["entrypoint"] == ["/etc/taskflow/start.sh"]
    assert "./deploy/compose/redis:/etc/taskflow:ro" in redis_spec["volumes"]
    start = (ROOT / "deploy" / "compose" / "redis" / "start.sh").read_text()
    assert "--aclfile" in start
    assert "--requirepass" not in start
    for user, variable in REDIS_USERS.items():
        assert redis_spec["environment"][variable].startswith(f"${{{variable}:?"), variable
        assert f"@{variable}@" in start
        url = services[user]["environment"]["REDIS_URL"]
        assert url.startswith(f"redis://{user}:${{{variable}:?"), (user, url)
        assert url.endswith("@redis:6379/0"), url
    # The healthcheck names a user: the default user is off.
    assert redis_spec["healthcheck"]["test"][:4] == ["CMD", "redis-cli", "--user", "api-gateway"]

    # The template is the manifests' ACL file, a placeholder in place of each password.
    k8s = yaml.safe_load_all(
        (ROOT / "deploy" / "k8s" / "base" / "20-secrets.example.yaml").read_text()
    )
    (secret,) = [doc for doc in k8s if doc["metadata"]["name"] == "taskflow-redis"]
    template = (ROOT / "deploy" / "compose" / "redis" / "users.acl.in").read_text()
    for user, variable in REDIS_USERS.items():
        template = template.replace(
            f"user {user} on >@{variable}@ ", f"user {user} on >replace-me "
        )
    assert template == secret["stringData"]["users.acl"]
    assert "user default off" in template


def test_services_use_least_privilege_database_roles_and_migrate_apart(
    compose: dict[str, object],
) -> None:
    """Issue 21 point 7: no service connects as the superuser; a migration role owns the schema
    and migrates in a one-off container the service waits for; the roles script is the
    manifests' (deploy/k8s/base/30-datastores.yaml, taskflow-db-roles)."""
    services = compose["services"]
    assert isinstance(services, dict)
    for service, database, role, secret in (
        ("user-service", "users-db", "user_service", "USERS_DB"),
        ("task-service", "tasks-db", "task_service", "TASKS_DB"),
    ):
        variable = f"{service.upper().replace('-', '_')}_DATABASE_URL"
        url = services[service]["environment"][variable]
        assert url.startswith(f"postgresql://{role}:${{{secret}_SERVICE_PASSWORD:?"), url
        migrate = services[f"{service}-migrate"]
        migration_url = migrate["environment"][variable]
        assert migration_url.startswith(
            f"postgresql://{role}_migration:${{{secret}_MIGRATION_PASSWORD:?"
        ), migration_url
        assert migrate["command"] == ["alembic", "-c", "alembic.ini", "upgrade", "head"]
        assert migrate["image"] == services[service]["image"]
        assert services[service]["depends_on"][f"{service}-migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert services[service]["environment"]["MIGRATE_ON_START"] == "false"
        db = services[database]
        assert db["environment"]["TASKFLOW_MIGRATION_ROLE"] == f"{role}_migration"
        assert db["environment"]["TASKFLOW_SERVICE_ROLE"] == role
        assert "./deploy/compose/postgres-initdb:/docker-entrypoint-initdb.d:ro" in db["volumes"]
    for name, spec in services.items():
        for key, value in spec.get("environment", {}).items():
            assert "postgresql://postgres:" not in str(value), (name, key)

    datastores = yaml.safe_load_all(
        (ROOT / "deploy" / "k8s" / "base" / "30-datastores.yaml").read_text()
    )
    (roles,) = [doc for doc in datastores if doc and doc["metadata"]["name"] == "taskflow-db-roles"]
    initdb = ROOT / "deploy" / "compose" / "postgres-initdb"
    assert (initdb / "10-roles.sh").read_text() == roles["data"]["roles.sh"]
    assert (initdb / "roles.sql.in").read_text() == roles["data"]["roles.sql"]


def test_no_example_secret_in_deployment_files() -> None:
    from taskflow_kit.settings import EXAMPLE_JWT_SECRET

    files = [ROOT / "docker-compose.yml", ROOT / ".env.example", *(ROOT / "deploy").rglob("*.yaml")]
    for path in files:
        text = path.read_text()
        assert EXAMPLE_JWT_SECRET not in text, path
        assert "${POSTGRES_PASSWORD:-" not in text, path
        assert ":postgres@" not in text, path


def test_every_container_restarts_by_itself(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    for name, spec in services.items():
        # A one-off migration is retried until it succeeds, then stays done.
        expected = "on-failure" if name.endswith("-migrate") else "unless-stopped"
        assert spec.get("restart") == expected, name


def test_each_database_service_has_its_own_database(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    users = services["user-service"]["environment"]["USER_SERVICE_DATABASE_URL"]
    tasks = services["task-service"]["environment"]["TASK_SERVICE_DATABASE_URL"]
    assert "@users-db:" in users
    assert "@tasks-db:" in tasks


def test_one_dockerfile_serves_every_service() -> None:
    assert not [service for service in SERVICES if (ROOT / service / "Dockerfile").exists()]
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM .* AS build$", dockerfile, re.MULTILINE), "multi-stage build"
    assert '--package "$SERVICE"' in dockerfile
    assert "COPY --from=build /app/.venv /app/.venv" in dockerfile
    assert re.search(r"^HEALTHCHECK .*", dockerfile, re.MULTILINE)
    assert re.search(r"^STOPSIGNAL SIGTERM$", dockerfile, re.MULTILINE)
    assert "--timeout-graceful-shutdown" in dockerfile
    assert 'TASKFLOW_APP="${PACKAGE}.main:create_app"' in dockerfile
    assert "EXPOSE ${PORT}" in dockerfile
    assert "--no-proxy-headers" in dockerfile, "uvicorn must not trust forged X-Forwarded-For"
    # The WebSocket message bound is uvicorn's, the same in images as under make run and tests.
    assert f"--ws-max-size {WS_MAX_SIZE} " in dockerfile
    assert uvicorn_command("a:b", port=1)[-2:] == ["--ws-max-size", str(WS_MAX_SIZE)]
    assert re.search(r"^USER \w+", dockerfile, re.MULTILINE), "images must not run as root"
    # uvicorn, not a shell, must be PID 1 to receive SIGTERM.
    assert '"exec uvicorn ' in dockerfile


def test_an_image_holds_the_kit_and_its_own_service_only() -> None:
    dockerfile = DOCKERFILE.read_text()
    copied = re.findall(r"^COPY (?!--)(\S+) ", dockerfile, re.MULTILINE)
    sources = {path for path in copied if not path.endswith(("pyproject.toml", "uv.lock"))}
    assert sources == {"libs/kit", "${SERVICE}"}
    pyprojects = set(re.findall(r"^COPY (\S+)/pyproject.toml \1/$", dockerfile, re.MULTILINE))
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    expected = {
        str(path.parent.relative_to(ROOT))
        for pattern in members["members"]
        for path in ROOT.glob(f"{pattern}/pyproject.toml")
    }
    assert pyprojects == expected, "uv needs every member's pyproject.toml to read the lock"


def test_dockerfile_uv_matches_the_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text()
    version = re.search(r"^UV_VERSION := (\S+)", makefile, re.MULTILINE)
    assert version is not None
    assert f'"uv=={version.group(1)}"' in DOCKERFILE.read_text()


def test_workspace_lists_every_service() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = pyproject["tool"]["uv"]["workspace"]["members"]
    assert set(SERVICES) <= set(members)


def test_ci_workflow_runs_the_ci_script() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    assert any(step.get("run") == "bash .ci/run" for step in steps)
    services = workflow["jobs"]["test"]["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
