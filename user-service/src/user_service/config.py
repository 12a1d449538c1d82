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

    # A login session (one refresh-token family) ends this long after the login, however
    # often it is refreshed; unused for `refresh_token_expire_days` it ends earlier (idle).
    session_max_lifetime_days: float = Field(default=30, gt=0)

    # The web app's session cookie (the refresh token; see docs/security.md). Secure must be
    # on whenever browsers reach the app over TLS (behind an HTTPS ingress).
    session_cookie_secure: bool = False
    # Origins, besides the request's own host, whose pages may use the cookie session.
    session_allowed_origins: list[str] = Field(default_factory=list)

    # Failed logins (see auth/throttle.py): an account at one address may fail this often
    # before each further try waits a growing delay (1 s, 2 s, 4 s, ... up to the maximum).
    login_failures_per_pair: int = Field(default=5, ge=1)
    # Failures on one account from all addresses, and from one address on all accounts,
    # before addresses where the account never signed in are delayed the same way.
    login_failures_per_account: int = Field(default=20, ge=1)
    login_failures_per_address: int = Field(default=50, ge=1)
    # How long failures are remembered after the last one.
    login_failure_window_seconds: int = Field(default=900, ge=1)
    login_delay_max_seconds: int = Field(default=900, ge=1)
    # An address where an account signed in successfully is "known" to it this long.
    login_known_address_days: float = Field(default=30, gt=0)
    # Behind the gateway the client address comes from X-Forwarded-For: the entry appended by
    # the last `forwarded_for_proxy_hops` trusted proxies (the gateway: 1). Set
    # trust_forwarded_for false when clients reach this service directly.
    trust_forwarded_for: bool = True
    forwarded_for_proxy_hops: int = Field(default=1, ge=1)

    # Per-route budgets of requests (successful ones too) per minute. On by default except in
    # ENVIRONMENT=test, where the whole suite comes from one loopback address.
    route_budgets_enabled: bool | None = None
    register_per_address_per_minute: int = Field(default=20, ge=1)
    login_per_address_per_minute: int = Field(default=300, ge=1)
    login_per_account_per_minute: int = Field(default=30, ge=1)
    refresh_per_address_per_minute: int = Field(default=300, ge=1)
    password_change_per_account_per_minute: int = Field(default=10, ge=1)
    password_change_per_address_per_minute: int = Field(default=30, ge=1)

    # bcrypt runs at most this many hashes at once (default: one per CPU core); a request
    # waits up to `password_hash_queue_seconds` for a slot, then gets 503 + Retry-After.
    password_hash_concurrency: int | None = Field(default=None, ge=1)
    password_hash_queue_seconds: float = Field(default=2.0, ge=0)

    # Expired refresh tokens, and revoked ones after the retention, are deleted in batches.
    refresh_token_prune_interval_seconds: float = Field(default=600, gt=0)
    refresh_token_prune_batch: int = Field(default=1000, ge=1)
    revoked_refresh_token_retention_hours: float = Field(default=24, ge=0)

    @property
    def route_budgets_on(self) -> bool:
        if self.route_budgets_enabled is None:
            return self.environment != "test"
        return self.route_budgets_enabled
