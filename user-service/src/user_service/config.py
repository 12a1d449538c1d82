"""user-service settings (the shared ones come from the kit's ServiceSettings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict
from taskflow_kit.settings import ServiceSettings

SERVICE_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = SERVICE_ROOT / "alembic.ini"


class Settings(ServiceSettings):
    """Environment-driven configuration of user-service."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/taskflow_users",
        validation_alias=AliasChoices("USER_SERVICE_DATABASE_URL", "DATABASE_URL"),
    )
    migrate_on_start: bool = True
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)

    # bcrypt work factor: 12 in production; tests lower it to keep the suite fast.
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    access_token_expire_minutes: int = Field(default=15, ge=1)
    refresh_token_expire_days: int = Field(default=7, ge=1)

    # Failed logins allowed per window before 429 (successful logins are never counted).
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=50, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    # Behind the gateway the client address comes from X-Forwarded-For: the entry appended by
    # the last `forwarded_for_proxy_hops` trusted proxies (the gateway: 1). Set
    # trust_forwarded_for false when clients reach this service directly.
    trust_forwarded_for: bool = True
    forwarded_for_proxy_hops: int = Field(default=1, ge=1)
