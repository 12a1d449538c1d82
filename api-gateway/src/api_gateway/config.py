"""Gateway settings: upstream replicas, timeouts, breaker, body limit, CORS, rate limits and
the trusted proxies in front.

Gateway knobs are read from `GATEWAY_*` variables; the shared ones (JWT_SECRET, REDIS_URL, ...)
keep their unprefixed names from the kit's `ServiceSettings`.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict
from taskflow_kit.settings import ServiceSettings

from api_gateway.forwarded import Network, parse_networks


def _env(name: str, *fallbacks: str) -> AliasChoices:
    return AliasChoices(f"GATEWAY_{name}", *fallbacks)


def split_csv(value: str) -> list[str]:
    """`"a, b,,c"` → `["a", "b", "c"]`."""
    return [item.strip() for item in value.split(",") if item.strip()]


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Comma-separated replica base URLs; a host name expands to every address it resolves to.
    user_service_urls: str = Field(
        "http://127.0.0.1:8001", validation_alias=_env("USER_SERVICE_URLS", "USER_SERVICE_URL")
    )
    task_service_urls: str = Field(
        "http://127.0.0.1:8002", validation_alias=_env("TASK_SERVICE_URLS", "TASK_SERVICE_URL")
    )
    stats_service_urls: str = Field(
        "http://127.0.0.1:8003", validation_alias=_env("STATS_SERVICE_URLS", "STATS_SERVICE_URL")
    )
    dns_refresh_seconds: float = Field(10.0, gt=0, validation_alias=_env("DNS_REFRESH_SECONDS"))
    health_interval_seconds: float = Field(
        2.0, gt=0, validation_alias=_env("HEALTH_INTERVAL_SECONDS")
    )
    eject_after_5xx: int = Field(5, ge=1, validation_alias=_env("EJECT_AFTER_5XX"))

    connect_timeout: float = Field(1.0, gt=0, validation_alias=_env("CONNECT_TIMEOUT"))
    read_timeout: float = Field(10.0, gt=0, validation_alias=_env("READ_TIMEOUT"))
    deadline: float = Field(15.0, gt=0, validation_alias=_env("DEADLINE"))
    retries: int = Field(2, ge=0, validation_alias=_env("RETRIES"))
    retry_backoff_seconds: float = Field(0.02, ge=0, validation_alias=_env("RETRY_BACKOFF_SECONDS"))
    max_connections_per_replica: int = Field(
        256, ge=1, validation_alias=_env("MAX_CONNECTIONS_PER_REPLICA")
    )

    breaker_failures: int = Field(5, ge=1, validation_alias=_env("BREAKER_FAILURES"))
    breaker_reset_seconds: float = Field(10.0, gt=0, validation_alias=_env("BREAKER_RESET_SECONDS"))

    max_body_bytes: int = Field(1_048_576, ge=0, validation_alias=_env("MAX_BODY_BYTES"))

    cors_origins: str = Field(
        "http://localhost:3000,http://127.0.0.1:3000", validation_alias=_env("CORS_ORIGINS")
    )
    # Strict-Transport-Security max-age for browsers reaching the gateway over HTTPS; 0: none
    # (plain-HTTP development must not tell browsers to insist on HTTPS).
    hsts_seconds: int = Field(0, ge=0, validation_alias=_env("HSTS_SECONDS"))

    rate_limit_enabled: bool = Field(True, validation_alias=_env("RATE_LIMIT_ENABLED"))
    rate_limit_per_user: int = Field(3000, ge=1, validation_alias=_env("RATE_LIMIT_PER_USER"))
    rate_limit_per_ip: int = Field(60000, ge=1, validation_alias=_env("RATE_LIMIT_PER_IP"))
    rate_limit_window_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("RATE_LIMIT_WINDOW_SECONDS")
    )
    redis_timeout: float = Field(0.25, gt=0, validation_alias=_env("REDIS_TIMEOUT"))

    ws_heartbeat_seconds: float = Field(20.0, gt=0, validation_alias=_env("WS_HEARTBEAT_SECONDS"))
    # Messages a slow WebSocket client may fall behind before it is closed (1013).
    ws_queue_size: int = Field(256, ge=1, validation_alias=_env("WS_QUEUE_SIZE"))
    # A client message over this closes the socket (1009); the protocol's are under 5 KiB.
    ws_max_message_bytes: int = Field(8192, ge=1024, validation_alias=_env("WS_MAX_MESSAGE_BYTES"))
    # Sockets one user may hold open on one replica (a tab holds one); more are refused (4429).
    ws_max_sockets_per_user: int = Field(20, ge=1, validation_alias=_env("WS_MAX_SOCKETS_PER_USER"))
    # `?token=` on the live socket: the published contract lists it beside the first message.
    ws_query_token: bool = Field(True, validation_alias=_env("WS_QUERY_TOKEN"))

    openapi_refresh_seconds: float = Field(
        30.0, gt=0, validation_alias=_env("OPENAPI_REFRESH_SECONDS")
    )

    # Proxies in front of the gateway (load balancer, ingress) whose X-Forwarded-For is believed:
    # comma-separated addresses or CIDRs. Empty: the connection's peer is the client.
    # api_gateway.forwarded; docs/operations.md, "Behind a load balancer".
    trusted_proxies: str = Field("", validation_alias=_env("TRUSTED_PROXIES"))

    # Bearer token for `/metrics` and the detail of `/api/status` (monitoring); unset: `/metrics`
    # is not served on this port at all.
    metrics_token: SecretStr | None = Field(None, validation_alias=_env("METRICS_TOKEN"))
    # Loopback clients see operational detail without a token: off in every environment (a
    # reverse proxy on the same host would make every client loopback); `make run` opts in.
    trust_loopback: bool = Field(False, validation_alias=_env("TRUST_LOOPBACK"))

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: str) -> str:
        parse_networks(split_csv(value))  # ValueError names the bad entry: refused at start-up
        return value

    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(split_csv(self.trusted_proxies))

    def upstream_urls(self) -> dict[str, list[str]]:
        return {
            "user-service": split_csv(self.user_service_urls),
            "task-service": split_csv(self.task_service_urls),
            "stats-service": split_csv(self.stats_service_urls),
        }

    def loopback_is_trusted(self) -> bool:
        return self.trust_loopback

    def monitoring_token(self) -> str | None:
        """The configured monitoring token (an empty value configures none)."""
        token = self.metrics_token.get_secret_value() if self.metrics_token else ""
        return token or None

    def cors_origin_list(self) -> list[str]:
        return split_csv(self.cors_origins)
