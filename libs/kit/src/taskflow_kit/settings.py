"""Settings shared by every service; each service subclasses with its own fields."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskflow_kit.tokens import MIN_SECRET_BYTES, TokenConfig

# Only for development and tests: production refuses to start with it.
DEFAULT_JWT_SECRET = "taskflow-development-secret-change-me-0123456789"


class ServiceSettings(BaseSettings):
    """Environment-driven settings common to all services (JWT, Redis, logging)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_issuer: str = "taskflow"
    jwt_audience: str = "taskflow"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "taskflow:"
    log_level: str = "INFO"
    log_json: bool = True

    # Events (outbox → Redis Streams → consumers); see docs/events.md.
    events_stream_maxlen: int = Field(default=100_000, ge=1000)
    outbox_poll_seconds: float = Field(default=2.0, gt=0)
    outbox_retention_hours: float = Field(default=24.0, gt=0)
    outbox_wait_on_commit_seconds: float = Field(default=0.25, ge=0)
    events_claim_idle_seconds: float = Field(default=15.0, gt=0)
    events_max_deliveries: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _secret_is_safe(self) -> ServiceSettings:
        secret = self.jwt_secret.get_secret_value()
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        if self.environment == "production" and secret == DEFAULT_JWT_SECRET:
            raise ValueError("JWT_SECRET must be set in production (the example secret is refused)")
        return self

    def token_config(self) -> TokenConfig:
        return TokenConfig(
            secret=self.jwt_secret.get_secret_value(),
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
        )
