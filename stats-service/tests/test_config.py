"""stats-service settings come from the documented environment variables."""

from __future__ import annotations

import pydantic
import pytest
from stats_service.config import Settings


@pytest.fixture(autouse=True)
def _test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside ENVIRONMENT=test a JWT_SECRET is required; these tests are about other settings.
    monkeypatch.setenv("ENVIRONMENT", "test")


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_SERVICE_URL", "http://tasks.internal:9002")
    monkeypatch.setenv("TASK_SERVICE_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("STATS_CACHE_TTL_SECONDS", "10")
    monkeypatch.setenv("STATS_LAST_GOOD_TTL_SECONDS", "600")

    settings = Settings()

    assert settings.task_service_url == "http://tasks.internal:9002"
    assert settings.task_service_timeout_seconds == 1.5
    assert settings.stats_cache_ttl_seconds == 10
    assert settings.stats_last_good_ttl_seconds == 600


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASK_SERVICE_URL", "STATS_CACHE_TTL_SECONDS", "STATS_LAST_GOOD_TTL_SECONDS"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings()

    assert settings.task_service_url == "http://127.0.0.1:8002"
    assert settings.stats_cache_ttl_seconds == 30
    assert settings.stats_last_good_ttl_seconds == 86400


def test_a_cache_ttl_below_one_second_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATS_CACHE_TTL_SECONDS", "0")

    with pytest.raises(pydantic.ValidationError):
        Settings()
