from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from taskflow_kit.settings import EXAMPLE_JWT_SECRET, ServiceSettings

REAL_SECRET = "p" * 48


@pytest.fixture(autouse=True)
def _no_ambient_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Neither the caller's environment nor a .env in the working directory may decide these tests.
    for name in ("JWT_SECRET", "ENVIRONMENT", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("environment", ["development", "production"])
def test_no_secret_refuses_to_start_naming_the_variable(environment: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET is not set"):
        ServiceSettings(environment=environment)  # type: ignore[arg-type]


@pytest.mark.parametrize("environment", ["development", "production"])
def test_the_public_example_secret_is_refused_outside_tests(environment: str) -> None:
    with pytest.raises(ValidationError, match="public example secret"):
        ServiceSettings(environment=environment, jwt_secret=EXAMPLE_JWT_SECRET)  # type: ignore[arg-type]


def test_an_empty_secret_counts_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "")
    with pytest.raises(ValidationError, match="JWT_SECRET is not set"):
        ServiceSettings()


def test_tests_fall_back_to_the_example_secret() -> None:
    settings = ServiceSettings(environment="test")
    assert settings.token_config().secret == EXAMPLE_JWT_SECRET


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        ServiceSettings(jwt_secret="too-short")  # type: ignore[arg-type]


def test_production_with_a_real_secret_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", REAL_SECRET)
    settings = ServiceSettings()
    assert settings.environment == "production"
    assert settings.token_config().secret == REAL_SECRET


@pytest.mark.parametrize("password", ["postgres", "Replace-Me", "changeme"])
def test_example_passwords_in_urls_are_refused_outside_tests(password: str) -> None:
    with pytest.raises(ValidationError, match="REDIS_URL carries a well-known example password"):
        ServiceSettings(jwt_secret=REAL_SECRET, redis_url=f"redis://:{password}@redis:6379/0")  # type: ignore[arg-type]
    tested = ServiceSettings(environment="test", redis_url=f"redis://:{password}@redis:6379/0")
    assert tested.redis_url.endswith("@redis:6379/0")


def test_a_password_of_ones_own_is_accepted() -> None:
    settings = ServiceSettings(jwt_secret=REAL_SECRET, redis_url="redis://:k3Yq9-x@redis:6379/0")  # type: ignore[arg-type]
    assert settings.redis_url.startswith("redis://:k3Yq9-x@")


class _DatabaseSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/x"


def test_a_service_database_url_with_an_example_password_is_refused() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL carries a well-known example password"):
        _DatabaseSettings(
            jwt_secret=REAL_SECRET,  # type: ignore[arg-type]
            database_url="postgresql://postgres:postgres@db:5432/x",
        )
    # Trust authentication (no password at all) is how `make run` and the tests connect.
    assert _DatabaseSettings(jwt_secret=REAL_SECRET).database_url.endswith("/x")  # type: ignore[arg-type]
