"""Settings shared by every service; each service subclasses with its own fields."""

from __future__ import annotations

import datetime as dt
from typing import Literal, TypedDict
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskflow_kit.tokens import MIN_SECRET_BYTES, TokenConfig

# Public (it is in this repository), so it signs nothing outside tests: with ENVIRONMENT=test and
# no JWT_SECRET it is the secret; in every other environment it is refused, and so is no secret.
EXAMPLE_JWT_SECRET = "taskflow-development-secret-change-me-0123456789"
# Passwords that ship in examples and images' documentation: refused in any *_url setting (the
# databases', Redis's) outside tests.
EXAMPLE_PASSWORDS = frozenset(
    {"postgres", "password", "changeme", "change-me", "replace-me", "redis"}
)
SECRET_HINT = (
    "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'` and give "
    "every service the same value (`make run` keeps one in .data/jwt_secret)"
)


def example_password_in(url: str) -> bool:
    """Whether a connection URL carries one of the well-known example passwords."""
    password = urlsplit(url).password
    return password is not None and password.lower() in EXAMPLE_PASSWORDS


class RelayOptions(TypedDict):
    """The outbox relay's tuning (`taskflow_kit.outbox.OutboxRelay` keyword arguments)."""

    key_prefix: str
    stream_maxlen: int
    poll_interval: float
    retention: dt.timedelta


class ConsumerOptions(TypedDict):
    """A stream consumer's tuning (`taskflow_kit.consumer.consumer_for` keyword arguments)."""

    key_prefix: str
    claim_idle: float
    max_deliveries: int


class ServiceSettings(BaseSettings):
    """Environment-driven settings common to all services (JWT, Redis, logging)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    # No usable default: see _secret_is_safe.
    jwt_secret: SecretStr = SecretStr("")
    jwt_issuer: str = "taskflow"
    jwt_audience: str = "taskflow"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "taskflow:"
    # How long a Redis command may take before the service treats Redis as failing (and
    # degrades: docs/operations.md). Blocking stream reads have their own, longer bound.
    redis_timeout_seconds: float = Field(default=1.0, gt=0)
    log_level: str = "INFO"
    log_json: bool = True
    # OpenTelemetry (docs/operations.md): spans are exported over OTLP/HTTP only when set.
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str | None = None

    # A request transaction idle this long (its process frozen or stalled between statements)
    # is ended by PostgreSQL, so its row locks stop holding other replicas' writes. Keep it
    # below the gateway's read timeout (docs/operations.md).
    db_idle_in_transaction_seconds: float = Field(default=5.0, gt=0)

    # Events (outbox → Redis Streams → consumers); see docs/events.md.
    events_stream_maxlen: int = Field(default=100_000, ge=1000)
    outbox_poll_seconds: float = Field(default=2.0, gt=0)
    outbox_retention_hours: float = Field(default=24.0, gt=0)
    events_claim_idle_seconds: float = Field(default=15.0, gt=0)
    events_max_deliveries: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _secret_is_safe(self) -> ServiceSettings:
        secret = self.jwt_secret.get_secret_value()
        testing = self.environment == "test"
        if not secret:
            if not testing:
                raise ValueError(f"JWT_SECRET is not set: {SECRET_HINT}")
            secret = EXAMPLE_JWT_SECRET
            self.jwt_secret = SecretStr(secret)
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes: {SECRET_HINT}")
        if secret == EXAMPLE_JWT_SECRET and not testing:
            raise ValueError(
                "JWT_SECRET is the public example secret, which anyone can sign tokens with; "
                f"it is refused outside ENVIRONMENT=test: {SECRET_HINT}"
            )
        if not testing:
            for name in type(self).model_fields:
                value = getattr(self, name)
                if name.endswith("_url") and isinstance(value, str) and example_password_in(value):
                    raise ValueError(
                        f"{name.upper()} carries a well-known example password: set one of your own"
                    )
        return self

    def token_config(self) -> TokenConfig:
        return TokenConfig(
            secret=self.jwt_secret.get_secret_value(),
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
        )

    def configure_observability(self, service: str) -> None:
        """Logging and tracing for the process of `service`, from these settings (the kit's
        functions take the values; a service calls this once when it builds its app)."""
        from taskflow_kit.logs import configure_logging
        from taskflow_kit.tracing import configure_tracing

        configure_logging(service=service, level=self.log_level, json=self.log_json)
        configure_tracing(
            service=self.otel_service_name or service, endpoint=self.otel_exporter_otlp_endpoint
        )

    def relay_options(self) -> RelayOptions:
        """These settings as the values an `OutboxRelay` takes (the kit reads no settings)."""
        return RelayOptions(
            key_prefix=self.redis_prefix,
            stream_maxlen=self.events_stream_maxlen,
            poll_interval=self.outbox_poll_seconds,
            retention=dt.timedelta(hours=self.outbox_retention_hours),
        )

    def consumer_options(self) -> ConsumerOptions:
        """These settings as the values `consumer_for` takes."""
        return ConsumerOptions(
            key_prefix=self.redis_prefix,
            claim_idle=self.events_claim_idle_seconds,
            max_deliveries=self.events_max_deliveries,
        )
