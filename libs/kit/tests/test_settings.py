from __future__ import annotations

import pytest
from pydantic import ValidationError
from taskflow_kit.settings import DEFAULT_JWT_SECRET, ServiceSettings


def test_production_refuses_the_example_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET must be set in production"):
        ServiceSettings(environment="production", jwt_secret=DEFAULT_JWT_SECRET)  # type: ignore[arg-type]


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        ServiceSettings(jwt_secret="too-short")  # type: ignore[arg-type]


def test_production_with_a_real_secret_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", "p" * 48)
    settings = ServiceSettings()
    assert settings.environment == "production"
    assert settings.token_config().secret == "p" * 48
