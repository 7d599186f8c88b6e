"""Configuration from the environment (and `.env`), read once through `get_settings()`.

Tests build their own `Settings(...)` and pass it explicitly, or clear the cache with
`get_settings.cache_clear()` after changing the environment.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskdispatch.store.connections import is_sentinel_url, parse_sentinel_url
from taskdispatch.store.ratelimit import parse_rate_limit

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Every setting of taskdispatch; environment names are `TASKDISPATCH_<FIELD>`."""

    # Inputs stay out of error messages: a refused URL may carry a password.
    model_config = SettingsConfigDict(
        env_prefix="TASKDISPATCH_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    redis_url: str = "redis://localhost:6379/0"
    # Connections one API process may hold; further requests wait this long for one.
    redis_max_connections: int = 100
    redis_pool_timeout_s: float = 5.0
    broker_url: str | None = None
    # Redis high availability (docs/scaling.md). A sentinel:// URL asks its Sentinels for
    # the master of this name; they may have a password of their own (the URL's password is
    # the master's). With min_replicas > 0 every API write waits (WAIT) until that many
    # replicas have it, at most wait_timeout_ms, and answers 503 if fewer confirmed it.
    redis_sentinel_master: str = Field("mymaster", min_length=1)
    redis_sentinel_password: str | None = None
    redis_min_replicas: int = Field(0, ge=0)
    redis_wait_timeout_ms: int = Field(1000, ge=1)
    key_prefix: str = "td:"
    timezone: str = "Asia/Shanghai"
    api_token: str | None = None
    # Named tokens with roles: JSON, or the path of a JSON file (taskdispatch/service/access.py).
    api_tokens: str | None = None
    # Serve without any token on a non-loopback address (refused unless this is true).
    allow_anonymous: bool = False
    # Requests per token (or client address) across all API processes: "<n>/<second|
    # minute|hour>", e.g. "600/minute"; unset means no limit.
    rate_limit: str | None = None
    # Audit entries kept in the whole trail, and shown at most on a task's own page.
    audit_kept: int = 100_000
    audit_kept_per_task: int = 200
    cors_origins: list[str] = Field(default_factory=list)

    # Loopback unless told: `make run`, `python -m api.main`; containers set 0.0.0.0.
    api_host: str = Field(
        "127.0.0.1", validation_alias=AliasChoices("API_HOST", "TASKDISPATCH_API_HOST")
    )
    api_port: int = Field(8000, validation_alias=AliasChoices("API_PORT", "TASKDISPATCH_API_PORT"))
    log_level: str = Field(
        "INFO", validation_alias=AliasChoices("LOG_LEVEL", "TASKDISPATCH_LOG_LEVEL")
    )

    handlers: str = ""
    # Execution (beat, worker, recovery)
    route_by_sys_type: bool = False
    default_queue: str = "celery"
    claim_batch: int = 1000
    dispatch_timeout_s: float = 30.0
    beat_max_sleep_s: float = 5.0
    lease_ttl_s: float = 10.0
    retry_backoff_s: float = 10.0
    lock_retry_s: float = 2.0
    round_time_limit_s: float = 600.0
    # How long a cancelled round's handler may ignore the interrupt before its pool process
    # is stopped (the round is recorded cancelled either way).
    cancel_grace_s: float = Field(10.0, gt=0)
    # Downgrades the startup refusal of a Redis whose maxmemory-policy may evict keys.
    allow_eviction: bool = False
    # The worker's consume watchdog (taskdispatch/engine/watchdog.py).
    worker_probe_every_s: float = 3.0
    worker_deaf_after_s: float = 10.0
    runs_kept: int = 50
    max_consecutive_failures: int = 3
    # Alerts: how often the fleet (one process per period) looks for conditions such as an
    # overdue task or a dead beat (taskdispatch/engine/conditions.py).
    notify_watch_every_s: float = Field(5.0, gt=0)
    # The dashboard's address as receivers reach it (e.g. https://td.example.com), for the
    # link in each alert; unset: alerts carry no link.
    public_url: str | None = None
    # Delivery (taskdispatch/engine/notifier.py): a failing receiver is retried with backoff from
    # notify_backoff_s (doubling, at most 10 min) until notify_retry_for_s after the first
    # attempt, then given up. A process that dies holding a delivery or the event intake
    # leaves it to another after notify_claim_s.
    notify_retry_for_s: float = Field(3600.0, gt=0)
    notify_backoff_s: float = Field(5.0, gt=0)
    notify_claim_s: float = Field(30.0, gt=0)

    @field_validator("key_prefix")
    @classmethod
    def _prefix_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("TASKDISPATCH_KEY_PREFIX must not be empty (default 'td:').")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value:
            parse_rate_limit(value)
        return value or None

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _sentinel_url_parses(cls, value: str | None) -> str | None:
        # Refused here, with the reason, rather than by the first client a process builds.
        if value is not None and is_sentinel_url(value):
            parse_sentinel_url(value)
        return value

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def broker_is_store(self) -> bool:
        """Whether the Celery queues are lists on the store's Redis, which can then tell how
        many messages wait in each (`store.holding_messages`)."""
        return self.effective_broker_url == self.redis_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
