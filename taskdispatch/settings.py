"""Configuration from the environment (and `.env`), read once through `get_settings()`.

Tests build their own `Settings(...)` and pass it explicitly, or clear the cache with
`get_settings.cache_clear()` after changing the environment.

A setting with a syntax of its own is parsed once, when the settings load, into a typed
value the rest of the code reads (`Settings.redis_sentinel`, `broker_sentinel`,
`parsed_rate_limit`); a value that does not parse is refused then, naming the variable.
Sentinel URLs are parsed here (`parse_sentinel_url`), the clients built from them in
connections.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "SENTINEL_PORT",
    "RateLimit",
    "SentinelUrl",
    "Settings",
    "get_settings",
    "is_sentinel_url",
    "parse_rate_limit",
    "parse_sentinel_url",
]


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
            _rate_limit_of(value)  # its message names TASKDISPATCH_RATE_LIMIT and the form
        return value or None

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _sentinel_url_parses(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Refused here, with the reason, rather than by the first client a process builds.
        if value is not None:
            try:
                _sentinel_of(value)
            except ValueError as exc:
                variable = f"TASKDISPATCH_{(info.field_name or '').upper()}"
                raise ValueError(
                    f"{variable} is not a valid Sentinel URL: {exc}; write it as "
                    "sentinel://[[user]:password@]host[:port][/db][?ssl_...];sentinel://host2..."
                ) from None
        return value

    @property
    def redis_sentinel(self) -> SentinelUrl | None:
        """`redis_url` parsed, when it names a Sentinel set (None: one server)."""
        return _sentinel_of(self.redis_url)

    @property
    def broker_sentinel(self) -> SentinelUrl | None:
        """`effective_broker_url` parsed, when it names a Sentinel set."""
        return _sentinel_of(self.effective_broker_url)

    @property
    def parsed_rate_limit(self) -> RateLimit | None:
        """`rate_limit` parsed (None: no limit)."""
        return _rate_limit_of(self.rate_limit) if self.rate_limit else None

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


# Parsed once per value, whichever Settings (a copy with one field changed included) asks.
@lru_cache(maxsize=32)
def _sentinel_of(url: str) -> SentinelUrl | None:
    return parse_sentinel_url(url) if is_sentinel_url(url) else None


@lru_cache(maxsize=8)
def _rate_limit_of(text: str) -> RateLimit:
    return parse_rate_limit(text)


# The Sentinels' own port, when a part of the URL names none.
SENTINEL_PORT = 26379
# The query options a Sentinel URL takes (TLS, as kombu reads them from a broker URL).
_TLS_OPTIONS = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
)
_CERT_REQS = ("none", "optional", "required")
# A host name or an IP address (an IPv6 one without its brackets, perhaps with a zone).
_HOST = re.compile(r"[A-Za-z0-9_.-]+|[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?")


@dataclass(frozen=True)
class SentinelUrl:
    """A `sentinel://...;sentinel://...` list: where the Sentinels are, how to reach the master."""

    sentinels: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    db: int = 0
    # The ssl_* options, with redis-py's names and values; empty means plain TCP.
    tls: dict[str, str | bool] = field(default_factory=dict)

    def master_options(self) -> dict[str, Any]:
        """redis-py options of the connections to the master."""
        return {
            "username": self.username,
            "password": self.password,
            "db": self.db,
            **self.tls_options(),
        }

    def tls_options(self) -> dict[str, Any]:
        return {"ssl": True, **self.tls} if self.tls else {}

    def kombu_url(self) -> str:
        """The URL for kombu's `sentinel` transport, every option repeated on every part.

        kombu reads the password, the database and the TLS options from the part it uses,
        and after a connection error moves on to the next part: options given on one part
        only would be gone after the first failover.
        """
        auth = ""
        if self.username or self.password:
            auth = quote(self.username or "", safe="")
            auth += f":{quote(self.password, safe='')}" if self.password else ""
            auth += "@"
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in self.tls.items()}
        tail = f"/{self.db}" + (f"?{urlencode(query)}" if query else "")
        return ";".join(
            f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}{tail}"
            for host, port in self.sentinels
        )


def is_sentinel_url(url: str) -> bool:
    return url.lstrip().lower().startswith("sentinel://")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse a Sentinel URL list; raises ValueError saying what is wrong and where.

    Credentials, database and TLS options may be given on one part or repeated on several
    (Celery's documentation shows both); parts that give different values are refused,
    since the store and the broker would read different ones. Messages name a part by its
    number, and by its host once that is known to be one, never by its text: a malformed
    part may hold a password anywhere.
    """
    parts = [part.strip() for part in url.split(";") if part.strip()]
    if not parts:
        raise ValueError("a Sentinel URL needs at least one sentinel://host:port")
    sentinels: list[tuple[str, int]] = []
    found: dict[str, Any] = {}
    for number, part in enumerate(parts, 1):
        host, port, split = _sentinel_address(part, f"part {number} of the Sentinel URL")
        where = f"part {number} of the Sentinel URL ({host}:{port})"
        sentinels.append((host, port))
        given: dict[str, Any] = {
            "user name": unquote(split.username) if split.username else None,
            "password": unquote(split.password) if split.password else None,
            "database": _database(split.path, where),
            **_tls(split.query, where),
        }
        for name, value in given.items():
            if value is not None and found.setdefault(name, value) != value:
                raise ValueError(
                    f"the parts of the Sentinel URL give different values of the {name}; "
                    "give it on one part, or the same on every part"
                )
    return SentinelUrl(
        sentinels=tuple(sentinels),
        username=found.get("user name"),
        password=found.get("password"),
        db=found.get("database", 0),
        tls={name: found[name] for name in _TLS_OPTIONS if name in found},
    )


def _sentinel_address(part: str, where: str) -> tuple[str, int, SplitResult]:
    """(host, port, the parsed part) of one `sentinel://` part of the list."""
    split = urlsplit(part)
    if split.scheme.lower() != "sentinel":
        raise ValueError(
            f"{where}: each ';'-separated part must be a sentinel:// URL (a ';' in a "
            "password must be written %3B)"
        )
    if "@" in split.path + split.query + split.fragment:
        # The host ended early: a password with a '/', '?' or '#' that is not encoded.
        raise ValueError(
            f"{where}: an '@' after the host; write '/', '?', '#' and ';' in a password "
            "as %2F, %3F, %23 and %3B"
        )
    try:
        port = split.port
    except ValueError:
        port = 0
    if port is None:
        port = SENTINEL_PORT
    if not 0 < port < 65536:
        raise ValueError(f"{where}: the port must be a number 1..65535")
    host = split.hostname
    if not host or not _HOST.fullmatch(host):
        raise ValueError(f"{where}: no host name or IP address")
    return host, port, split


def _database(path: str, where: str) -> int | None:
    number = path.strip("/")
    if not number:
        return None
    if not (number.isascii() and number.isdigit()):
        raise ValueError(f"{where}: the path must be a database number such as /0")
    return int(number)


def _tls(query: str, where: str) -> dict[str, str | bool]:
    options: dict[str, str | bool] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _TLS_OPTIONS:
            raise ValueError(f"{where}: unknown option {name!r}; one of {', '.join(_TLS_OPTIONS)}")
        if name == "ssl_cert_reqs":
            if value.lower() not in _CERT_REQS:
                raise ValueError(f"{where}: ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
            options[name] = value.lower()
        elif name == "ssl_check_hostname":
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{where}: ssl_check_hostname must be true or false")
            options[name] = value.lower() == "true"
        else:
            options[name] = value
    return options


_PERIODS_S = {"second": 1, "minute": 60, "hour": 3600}
_FORM = re.compile(r"\s*([1-9][0-9]{0,8})\s*/\s*(second|minute|hour)\s*")


@dataclass(frozen=True)
class RateLimit:
    count: int
    period_s: int

    @property
    def per_ms(self) -> float:
        """Tokens added back per millisecond."""
        return self.count / (self.period_s * 1000)

    @property
    def period_name(self) -> str:
        return next(name for name, s in _PERIODS_S.items() if s == self.period_s)


def parse_rate_limit(value: str) -> RateLimit:
    """`"600/minute"` -> RateLimit(600, 60); ValueError naming the accepted form."""
    match = _FORM.fullmatch(value)
    if match is None:
        raise ValueError(
            f"TASKDISPATCH_RATE_LIMIT must be <count>/<second|minute|hour>, e.g. 600/minute; "
            f"got {value!r}"
        )
    return RateLimit(int(match.group(1)), _PERIODS_S[match.group(2)])
