"""The one configuration object, read from the environment and validated at start-up.

Every error names the variable that caused it, so an operator can fix a deployment from the first
log line instead of reading a traceback. Faust's own settings keep their usual names and are passed
through by Faust itself; this module only covers what the product adds.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import ConfigError

LOT_METHODS = ("FIFO", "LIFO", "HIFO")
AUTH_MODES = ("jwt", "disabled")
DEFAULT_EMBEDDED_PORT = 19092

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_BROKER_HOST = re.compile(r"^[A-Za-z0-9._-]+:\d{1,5}$")


@dataclass(frozen=True, slots=True)
class Topics:
    """Names of every topic the app reads or writes; each overridable by `TOPIC_<NAME>`."""

    orders: str = "order-events"
    executions: str = "execution-events"
    quote_requests: str = "quote-request-events"
    quotes: str = "quote-events"
    trades: str = "trade-events"
    market_prices: str = "market-prices"
    contracts: str = "contract-events"
    backdated: str = "backdated-trades"
    trade_applied: str = "trade-applied-events"
    provisional: str = "provisional-trade-events"
    corrected: str = "historical-position-corrected-events"
    changes: str = "blotter-changes"

    def inputs(self) -> tuple[str, ...]:
        return (
            self.orders,
            self.executions,
            self.quote_requests,
            self.quotes,
            self.trades,
            self.market_prices,
            self.contracts,
        )

    def outputs(self) -> tuple[str, ...]:
        return (self.trade_applied, self.provisional, self.corrected, self.changes)

    def dlq(self, topic: str) -> str:
        return f"{topic}-dlq"

    def all_topics(self) -> tuple[str, ...]:
        ins = self.inputs()
        return (*ins, *(self.dlq(t) for t in ins), self.backdated, *self.outputs())


@dataclass(frozen=True, slots=True)
class Batching:
    """How the ingest agents take their input: up to `max_events` at a time, waiting at most
    `within_s` for a batch to fill. Larger batches cost less CPU per event (their outputs leave
    in bursts); `within_s` is the most a quiet stream delays an event."""

    max_events: int = 500
    within_s: float = 0.01


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration of one worker process."""

    broker_urls: tuple[str, ...]
    embedded_broker: bool
    schema_registry_url: str | None
    data_dir: Path
    web_host: str
    web_port: int
    topic_partitions: int
    default_lot_method: str
    business_date: dt.date
    max_future_days: int
    auth_mode: str
    auth_jwt_secret: str | None
    auth_jwt_public_key: str | None
    auth_jwks_url: str | None
    auth_jwt_issuer: str | None
    auth_jwt_audience: str | None
    auth_allowed_origins: tuple[str, ...]
    app_id: str
    consumer_group_instance_id: str | None
    worker_role: str
    log_level: str
    log_json: bool
    health_stall_seconds: int = 60
    leave_group_on_shutdown: bool = True
    topics: Topics = field(default_factory=Topics)
    batching: Batching = field(default_factory=Batching)

    @property
    def broker_url(self) -> str:
        """Faust's form: `kafka://h1:p1;h2:p2`."""
        return "kafka://" + ";".join(self.broker_urls)

    @property
    def bootstrap_servers(self) -> str:
        """aiokafka/librdkafka form: `h1:p1,h2:p2`."""
        return ",".join(self.broker_urls)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def env_int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """`env[name]` as an integer in [lo, hi], `default` when unset or blank; else ConfigError.
    The one parser of integer settings, also used by the auth and stream settings."""
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _get(env, name) or default
    normalized = raw.upper() if choices[0].isupper() else raw.lower()
    if normalized not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return normalized


def env_number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    """`env[name]` as a number in [lo, hi], `default` when unset or blank; else ConfigError."""
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if not lo <= value <= hi:  # also refuses nan
        raise ConfigError(name, f"must be between {lo:g} and {hi:g}, got {raw}")
    return value


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """`env[name]` as a boolean (1/true/yes/on, 0/false/no/off); else ConfigError."""
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"must be a boolean (true/false), got {raw!r}")


def parse_broker_url(raw: str) -> tuple[str, ...]:
    """Accept `kafka://h:p;h:p`, `h:p,h:p` or a mix; return `("h:p", ...)`."""
    body = raw.strip()
    if body.startswith("kafka://"):
        body = body[len("kafka://") :]
    hosts = tuple(h.strip() for h in re.split(r"[;,]", body) if h.strip())
    if not hosts:
        raise ConfigError("BROKER_URL", f"no host:port in {raw!r}")
    for host in hosts:
        if not _BROKER_HOST.match(host):
            raise ConfigError("BROKER_URL", f"expected host:port, got {host!r}")
    return hosts


def _topics(env: Mapping[str, str]) -> Topics:
    """Defaults, each overridable by `TOPIC_<NAME>`, all prefixed by `TOPIC_PREFIX` (for
    running several isolated deployments, or tests, on one cluster)."""
    prefix = _get(env, "TOPIC_PREFIX") or ""
    defaults = Topics()
    names: dict[str, str] = {}
    for name in Topics.__dataclass_fields__:
        var = f"TOPIC_{name.upper()}"
        raw = prefix + (_get(env, var) or getattr(defaults, name))
        if not _TOPIC_NAME.match(raw):
            raise ConfigError(var, f"is not a valid Kafka topic name: {raw!r}")
        names[name] = raw
    return Topics(**names)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `env` (default: the process environment); raise ConfigError."""
    env = os.environ if env is None else env
    raw_broker = _get(env, "BROKER_URL")
    embedded_port = env_int(env, "EMBEDDED_BROKER_PORT", DEFAULT_EMBEDDED_PORT, 1, 65535)
    if raw_broker is None:
        broker_urls = (f"127.0.0.1:{embedded_port}",)
        embedded = True
    else:
        broker_urls = parse_broker_url(raw_broker)
        embedded = False

    registry = _get(env, "SCHEMA_REGISTRY_URL")
    if registry is not None and not registry.startswith(("http://", "https://")):
        raise ConfigError("SCHEMA_REGISTRY_URL", f"must be an http(s) URL, got {registry!r}")

    raw_date = _get(env, "BUSINESS_DATE")
    if raw_date is None:
        business_date = dt.datetime.now(dt.UTC).date()
    else:
        try:
            business_date = dt.date.fromisoformat(raw_date)
        except ValueError:
            raise ConfigError("BUSINESS_DATE", f"must be an ISO date, got {raw_date!r}") from None

    auth_mode = _choice(env, "AUTH_MODE", "jwt", AUTH_MODES)
    secret = _get(env, "AUTH_JWT_SECRET")
    public_key = _get(env, "AUTH_JWT_PUBLIC_KEY")
    jwks_url = _get(env, "AUTH_JWKS_URL")
    if auth_mode == "jwt" and not (secret or public_key or jwks_url):
        raise ConfigError(
            "AUTH_MODE",
            "is jwt (the default) but none of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY, "
            "AUTH_JWKS_URL is set; set one, or AUTH_MODE=disabled for local development",
        )
    origins = tuple(
        o.strip() for o in (_get(env, "AUTH_ALLOWED_ORIGINS") or "").split(",") if o.strip()
    )
    role = _choice(env, "WORKER_ROLE", "all", ("all", "hotpath", "coldpath"))

    return Settings(
        broker_urls=broker_urls,
        embedded_broker=embedded,
        schema_registry_url=registry,
        data_dir=Path(_get(env, "DATA_DIR") or "./data"),
        web_host=_get(env, "WEB_HOST") or "127.0.0.1",
        web_port=env_int(env, "WEB_PORT", 6066, 1, 65535),
        topic_partitions=env_int(env, "TOPIC_PARTITIONS", 8, 1, 10_000),
        default_lot_method=_choice(env, "DEFAULT_LOT_METHOD", "FIFO", LOT_METHODS),
        business_date=business_date,
        max_future_days=env_int(env, "MAX_FUTURE_DAYS", 30, 0, 36_500),
        auth_mode=auth_mode,
        auth_jwt_secret=secret,
        auth_jwt_public_key=public_key,
        auth_jwks_url=jwks_url,
        auth_jwt_issuer=_get(env, "AUTH_JWT_ISSUER"),
        auth_jwt_audience=_get(env, "AUTH_JWT_AUDIENCE"),
        auth_allowed_origins=origins,
        app_id=_get(env, "APP_ID") or "trade-blotter",
        consumer_group_instance_id=_get(env, "CONSUMER_GROUP_INSTANCE_ID"),
        worker_role=role,
        log_level=(_get(env, "LOG_LEVEL") or "INFO").upper(),
        log_json=env_flag(env, "LOG_JSON", True),
        health_stall_seconds=env_int(env, "HEALTH_STALL_SECONDS", 60, 5, 86_400),
        leave_group_on_shutdown=env_flag(env, "LEAVE_GROUP_ON_SHUTDOWN", True),
        topics=_topics(env),
        batching=Batching(
            max_events=env_int(env, "AGENT_BATCH_MAX_EVENTS", 500, 1, 100_000),
            within_s=env_int(env, "AGENT_BATCH_WITHIN_MS", 10, 1, 1000) / 1000,
        ),
    )
