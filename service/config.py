"""Settings from environment variables (twelve-factor), with dev defaults.

The three secrets (PUBLISH_TOKEN, ADMIN_TOKEN, USER_TOKEN_SECRET) are
generated for development when unset, kept in ``var/dev-secrets.json`` so
that ``serve`` and ``token`` agree across processes and restarts, and printed
at start. Set them explicitly in production.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from service.adapters.database import default_sqlite_url
from service.adapters.influx import InfluxSettings, Retention
from service.adapters.jwt_tokens import JwtConfigError, jwt_verifier, read_public_key
from service.domain.backpressure import DEFAULT_ACTIONS, parse_actions
from service.domain.errors import InvalidInput
from service.domain.idempotency import DEFAULT_WINDOW_S
from service.domain.job_settings import JobSettings, job_settings_from
from service.domain.levels import LEVELS, PoolSettings
from service.domain.model import Priority
from service.domain.rate_limits import (
    CONNECT_PER_IP,
    CONNECT_PER_USER,
    EVENT_PER_IP,
    EVENT_PER_USER,
    parse_limit,
)
from service.domain.throttle import Rate, format_rates, parse_rates
from service.domain.tuning import TUNABLES

SECRET_NAMES = ("PUBLISH_TOKEN", "ADMIN_TOKEN", "USER_TOKEN_SECRET")
ADMIN_NAME = "admin"  # the actor ADMIN_TOKEN is audited as
MIN_NAMED_TOKEN = 16


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = ""
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "notify"
    influx_token: str | None = None
    influx_username: str | None = None
    influx_password: str | None = None
    redis_url: str | None = None
    redis_channel: str = "notify"  # nodes on one channel form one cluster
    write_only: bool = False  # publish only: no Socket.IO clients, no delivery
    log_follow_interval: float = 1.0  # cluster: how often the log's head is read
    presence_interval: float = 5.0  # cluster: how often presence is written to Redis
    proxy_hops: int = 0  # proxies in front that set X-Forwarded-For (werkzeug's ProxyFix)
    publish_token: str = ""
    admin_token: str = ""
    # more admin tokens, by name (ADMIN_TOKENS): the name is the actor audited
    named_admin_tokens: dict = field(default_factory=dict, compare=False)
    # tokens that may call only the alert webhook, by name (ALERT_WEBHOOK_TOKENS)
    alert_webhook_tokens: dict = field(default_factory=dict, compare=False)
    admin_can_publish: bool = False
    user_token_secret: str = ""
    user_token_ttl: int = 86_400
    # JWT user tokens (adapters/jwt_tokens.py), "" when unset: at most one of
    # the secret, the public key (its PEM text) and the JWKS URL
    jwt_secret: str = field(default="", repr=False)
    jwt_public_key: str = ""
    jwt_jwks_url: str = ""
    jwt_audience: str = ""
    jwt_issuer: str = ""
    optimization_level: str = "balanced"
    demo: bool = False
    grafana_url: str = "http://127.0.0.1:3000"
    # where admins reach the control API (SERVICE_URL): the jobs write it into
    # the `curl` that applies each open recommendation (analysis_recommendation)
    service_url: str = "http://127.0.0.1:8000"
    var_dir: str = "var"
    node_id: str = ""
    ping_interval: float = 25.0
    ping_timeout: float = 8.0
    cors_allowed_origins: str = "*"
    telemetry_spool_max_bytes: int = 256 * 1024 * 1024
    influx_raw_retention: str = "7d"
    influx_rollup_1m_retention: str = "90d"
    influx_rollup_1h_retention: str = "730d"
    db_slow_ms: float = 100.0
    telemetry_retry_max_s: float = 30.0
    telemetry_enabled: bool = True
    max_connections: int = 15_000
    max_connections_per_user: int = 10
    idle_timeout: float = 300.0
    batch_size: int = 50
    send_queue_max_bytes: int = 1 << 20
    socket_unsent_max_bytes: int = 0  # TCP_NOTSENT_LOWAT; 0: the kernel's own
    throttle_rates: dict = field(default_factory=lambda: dict(LEVELS["balanced"].throttle),
                                 compare=False)
    batch_timeout_ms: float = 50.0
    gc_gen0_threshold: int = 20_000
    gc_freeze: bool = True
    offline_queue_max: int = 1_000
    offline_queue_max_age: float = 7 * 86_400.0
    offline_trim_interval: float = 60.0
    idempotency_window: float = DEFAULT_WINDOW_S  # an Idempotency-Key is remembered this long
    memory_budget_mb: int = 512
    compression_min_bytes: int = 4096
    write_batch_size: int = 50
    db_pool: PoolSettings = PoolSettings()
    write_batch_window_ms: float = 0.0
    cache_entries: int = 5_000
    cache_ttl_s: float = 7_200.0
    cache_max_bytes: int = 64 << 20
    cache_compress_min_bytes: int = 2048  # 0: never compress cached values
    backpressure_high_water_bytes: int = 0  # 0: a quarter of the memory budget
    leak_grace_s: float = 30.0
    auto_rollback: bool = True  # the impact job rolls a clear regression back
    # the analysis jobs' intervals and windows (JOB_INTERVALS, *_WINDOW_S)
    jobs: JobSettings = field(default_factory=JobSettings, compare=False)
    backpressure_actions: dict = field(default_factory=lambda: dict(DEFAULT_ACTIONS),
                                       compare=False)
    # Socket.IO rate limits (domain/rate_limits.py): None when off
    connect_rate_per_ip: Rate | None = CONNECT_PER_IP
    connect_rate_per_user: Rate | None = CONNECT_PER_USER
    event_rate_per_ip: Rate | None = EVENT_PER_IP
    event_rate_per_user: Rate | None = EVENT_PER_USER
    generated_secrets: tuple[str, ...] = field(default=(), compare=False)
    env_tuned: tuple[str, ...] = ()  # tunables given by environment variables
    throttle_spec: str = ""  # THROTTLE as given: it may name only some priorities
    # `serve --workers`: WORKERS as given (0: unset, the default applies); in a
    # worker process, how many workers its node has (service.entrypoints.workers)
    workers: int = 0
    worker_index: int = 0  # 1..workers in a worker process; 0 in a node of one process

    def admin_credentials(self) -> dict[str, str]:
        """Every admin token by name: ADMIN_TOKEN is ``admin``."""
        return {ADMIN_NAME: self.admin_token, **self.named_admin_tokens}

    def alert_webhook_credentials(self) -> dict[str, str]:
        """The tokens POST /api/v1/alerts/grafana takes: every admin token, and
        ALERT_WEBHOOK_TOKENS, which no other route takes."""
        return {**self.admin_credentials(), **self.alert_webhook_tokens}

    def publish_credentials(self) -> dict[str, str]:
        """The tokens that may publish: admin ones only if ADMIN_CAN_PUBLISH=1."""
        tokens = {"publish": self.publish_token}
        return {**tokens, **self.admin_credentials()} if self.admin_can_publish else tokens

    def tunables(self) -> dict:
        """The values of the run-time tunables (service.domain.tuning) at start."""
        return {name: format_rates(self.throttle_rates) if name == "throttle"
                else getattr(self, name) for name in TUNABLES}

    def env_overrides(self) -> dict:
        """The tunables the environment set, as given: they stay over any level."""
        values = {k: v for k, v in self.tunables().items() if k in self.env_tuned}
        if "throttle" in values:
            values["throttle"] = self.throttle_spec
        return values

    @property
    def storage_kind(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    def retention(self) -> Retention:
        return Retention(
            raw=self.influx_raw_retention,
            rollup_1m=self.influx_rollup_1m_retention,
            rollup_1h=self.influx_rollup_1h_retention,
        )

    def per_worker(self, node_limit: int) -> int:
        """One worker's share of a limit on what the whole node holds
        (connections): the workers' shares never add up to more than it."""
        if not self.worker_index:
            return node_limit
        return max(1, node_limit // self.workers)

    def spool_dir(self, role: str) -> Path:
        """One spool per process: two processes never share a directory."""
        return Path(self.var_dir) / "telemetry-spool" / f"{self.node_id}-{role}"

    def influx_settings(self) -> InfluxSettings:
        return InfluxSettings(
            url=self.influx_url,
            database=self.influx_db,
            token=self.influx_token,
            username=self.influx_username,
            password=self.influx_password,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        var_dir = env.get("VAR_DIR", "var")
        port = _int(env, "PORT", 8000)
        secrets_found, generated = _dev_secrets(env, Path(var_dir))
        for name in ("INFLUX_RAW_RETENTION", "INFLUX_ROLLUP_1M_RETENTION",
                     "INFLUX_ROLLUP_1H_RETENTION"):
            value = env.get(name)
            if value is not None and not re.fullmatch(r"INF|\d+[mhdw]", value):
                raise ConfigError(f"{name} must look like 7d, 12h, 52w or INF, not {value!r}")
        level = env.get("OPTIMIZATION_LEVEL", "balanced")
        if level not in LEVELS:
            raise ConfigError(
                f"OPTIMIZATION_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}"
            )
        preset = LEVELS[level]
        admins = _named_tokens(env.get("ADMIN_TOKENS", ""), secrets_found)
        settings = cls(
            host=env.get("HOST", "127.0.0.1"),
            port=port,
            database_url=(normalize_database_url(env.get("DATABASE_URL", ""))
                          or default_sqlite_url(var_dir)),
            influx_url=env.get("INFLUX_URL", "http://127.0.0.1:8086"),
            influx_db=env.get("INFLUX_DB", "notify"),
            influx_token=env.get("INFLUX_TOKEN") or None,
            influx_username=env.get("INFLUX_USERNAME") or None,
            influx_password=env.get("INFLUX_PASSWORD") or None,
            redis_url=env.get("REDIS_URL") or None,
            redis_channel=_redis_channel(env.get("REDIS_CHANNEL", "notify")),
            write_only=env.get("WRITE_ONLY", "0") == "1",
            log_follow_interval=_float(env, "LOG_FOLLOW_INTERVAL", 1.0, maximum=60.0),
            presence_interval=_float(env, "PRESENCE_INTERVAL", 5.0, maximum=300.0),
            proxy_hops=_proxy_hops(env),
            publish_token=secrets_found["PUBLISH_TOKEN"],
            admin_token=secrets_found["ADMIN_TOKEN"],
            named_admin_tokens=admins,
            alert_webhook_tokens=_webhook_tokens(env.get("ALERT_WEBHOOK_TOKENS", ""),
                                                 secrets_found, admins),
            admin_can_publish=env.get("ADMIN_CAN_PUBLISH", "0") == "1",
            user_token_secret=secrets_found["USER_TOKEN_SECRET"],
            user_token_ttl=_int(env, "USER_TOKEN_TTL", 86_400),
            **_jwt(env),
            optimization_level=level,
            demo=env.get("DEMO", "0") == "1",
            grafana_url=env.get("GRAFANA_URL", "http://127.0.0.1:3000"),
            service_url=_service_url(env.get("SERVICE_URL", ""), port),
            var_dir=var_dir,
            node_id=env.get("NODE_ID") or f"{socket.gethostname()}-{port}",
            ping_interval=_float(env, "PING_INTERVAL", 25.0),
            ping_timeout=_float(env, "PING_TIMEOUT", 8.0),
            cors_allowed_origins=env.get("CORS_ALLOWED_ORIGINS", "*"),
            telemetry_spool_max_bytes=_int(env, "TELEMETRY_SPOOL_MAX_BYTES", 256 * 1024 * 1024),
            influx_raw_retention=env.get("INFLUX_RAW_RETENTION", "7d"),
            influx_rollup_1m_retention=env.get("INFLUX_ROLLUP_1M_RETENTION", "90d"),
            influx_rollup_1h_retention=env.get("INFLUX_ROLLUP_1H_RETENTION", "730d"),
            db_slow_ms=_float(env, "DB_SLOW_MS", 100.0),
            telemetry_retry_max_s=_float(env, "TELEMETRY_RETRY_MAX_S", 30.0),
            telemetry_enabled=env.get("TELEMETRY_ENABLED", "1") != "0",
            max_connections=_int(env, "MAX_CONNECTIONS", preset.max_connections),
            max_connections_per_user=_int(env, "MAX_CONNECTIONS_PER_USER",
                                          preset.max_connections_per_user),
            idle_timeout=_float(env, "IDLE_TIMEOUT", 300.0),
            batch_size=max(1, _int(env, "BATCH_SIZE", preset.batch_size)),
            send_queue_max_bytes=_int(env, "SEND_QUEUE_MAX_BYTES", preset.send_queue_max_bytes),
            socket_unsent_max_bytes=_int(env, "SOCKET_UNSENT_MAX_BYTES", 0),
            throttle_rates=_throttle(env.get("THROTTLE", ""), preset.throttle),
            batch_timeout_ms=_float(env, "BATCH_TIMEOUT_MS", preset.batch_timeout_ms),
            gc_gen0_threshold=max(1, _int(env, "GC_GEN0_THRESHOLD", preset.gc_gen0_threshold)),
            gc_freeze=env.get("GC_FREEZE", "1") != "0",
            offline_queue_max=max(1, _int(env, "OFFLINE_QUEUE_MAX", preset.offline_queue_max)),
            offline_queue_max_age=_float(env, "OFFLINE_QUEUE_MAX_AGE", 7 * 86_400.0),
            offline_trim_interval=max(0.1, _float(env, "OFFLINE_TRIM_INTERVAL", 60.0)),
            idempotency_window=_float(env, "IDEMPOTENCY_WINDOW", DEFAULT_WINDOW_S),
            memory_budget_mb=max(16, _int(env, "MEMORY_BUDGET_MB", preset.memory_budget_mb)),
            compression_min_bytes=max(0, _int(env, "COMPRESSION_MIN_BYTES", 4096)),
            write_batch_size=max(1, _int(env, "WRITE_BATCH_SIZE", preset.write_batch_size)),
            db_pool=PoolSettings(
                size=max(1, _int(env, "DB_POOL_SIZE", preset.db_pool.size)),
                max_overflow=_int(env, "DB_MAX_OVERFLOW", preset.db_pool.max_overflow),
                timeout_s=_float(env, "DB_POOL_TIMEOUT", preset.db_pool.timeout_s),
                pre_ping=env.get("DB_POOL_PRE_PING", "1") != "0"),
            write_batch_window_ms=_float(env, "WRITE_BATCH_WINDOW_MS", 0.0, zero_ok=True,
                                         maximum=100.0),
            cache_entries=_int(env, "CACHE_ENTRIES", preset.cache_entries),
            cache_ttl_s=_float(env, "CACHE_TTL_S", preset.cache_ttl_s),
            cache_max_bytes=_int(env, "CACHE_MAX_BYTES", 64 << 20),
            cache_compress_min_bytes=_int(env, "CACHE_COMPRESS_MIN_BYTES", 2048),
            backpressure_actions=_backpressure(env.get("BACKPRESSURE", "")),
            backpressure_high_water_bytes=max(0, _int(env, "BACKPRESSURE_HIGH_WATER_BYTES", 0)),
            leak_grace_s=_float(env, "LEAK_GRACE_S", 30.0),
            auto_rollback=env.get("AUTO_ROLLBACK", "1") != "0",
            jobs=_job_settings(env),
            connect_rate_per_ip=_limit(env, "CONNECT_RATE_PER_IP", CONNECT_PER_IP),
            connect_rate_per_user=_limit(env, "CONNECT_RATE_PER_USER", CONNECT_PER_USER),
            event_rate_per_ip=_limit(env, "EVENT_RATE_PER_IP", EVENT_PER_IP),
            event_rate_per_user=_limit(env, "EVENT_RATE_PER_USER", EVENT_PER_USER),
            generated_secrets=generated,
            env_tuned=tuple(t.name for t in TUNABLES.values() if env.get(t.env, "") != ""),
            throttle_spec=env.get("THROTTLE", ""),
            workers=_workers(env.get("WORKERS", "")),
        )
        _check_ranges(settings)
        if settings.write_only and not settings.redis_url:
            raise ConfigError("WRITE_ONLY=1 needs REDIS_URL: a publish-only node hands its "
                              "notifications to the other nodes through Redis")
        return settings


def _proxy_hops(env: Mapping[str, str]) -> int:
    hops = _int(env, "PROXY_HOPS", 0)
    if hops > 5:
        raise ConfigError(f"PROXY_HOPS counts the proxies in front of the node, 0-5, not {hops}")
    return hops


MAX_WORKERS = 256


def _workers(raw: str) -> int:
    """WORKERS: processes of `serve` (0 when unset: serve picks its default)."""
    if raw in ("", "auto"):
        return 0
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise ConfigError(f"WORKERS is a number of processes, 1-{MAX_WORKERS}, or auto, "
                          f"not {raw[:80]!r}")
    return int(raw)


# DATABASE_URL schemes, and the driver each means: the installed one. SQLAlchemy
# 2.1 maps a bare postgresql:// to psycopg 3, which is not installed: the node
# crashed at start with ModuleNotFoundError on the form most hosts give.
DATABASE_SCHEMES = {
    "postgresql": "postgresql+psycopg2", "postgres": "postgresql+psycopg2",
    "postgresql+psycopg2": "postgresql+psycopg2",
    "sqlite": "sqlite", "sqlite+pysqlite": "sqlite+pysqlite",
}


def normalize_database_url(raw: str) -> str:
    """DATABASE_URL with the installed driver named; "" when unset. Any
    other scheme is refused in one line that names only the scheme (the URL
    may hold a password)."""
    if not raw:
        return ""
    scheme, sep, rest = raw.partition("://")
    driver = DATABASE_SCHEMES.get(scheme.lower()) if sep else None
    if driver is None:
        shown = f"{scheme[:40]}://" if sep else "a value with no scheme"
        raise ConfigError(f"DATABASE_URL must start with postgresql://, postgres:// or "
                          f"sqlite:///, not {shown}")
    return f"{driver}://{rest}"


def _service_url(raw: str, port: int) -> str:
    """SERVICE_URL: an absolute http(s) URL, without a trailing slash; by
    default this node on the loopback."""
    value = raw.strip().rstrip("/") or f"http://127.0.0.1:{port}"
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ConfigError(f"SERVICE_URL must be an absolute http:// or https:// URL, "
                          f"not {raw[:80]!r}")
    return value


def _redis_channel(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise ConfigError("REDIS_CHANNEL is 1-64 of A-Z a-z 0-9 _ . : -, not "
                          f"{value[:80]!r}")
    return value


def _check_ranges(settings: Settings) -> None:
    """A tunable set by its variable must be in the range the control API
    allows too: a node must not start with a value no admin could set."""
    values = settings.tunables()
    for name in settings.env_tuned:
        tunable = TUNABLES[name]
        try:
            tunable.check(values[name])
        except InvalidInput as exc:
            raise ConfigError(f"{tunable.env}: {exc.message}") from None


def _token_pairs(variable: str, raw: str) -> dict[str, str]:
    """``name:token`` pairs, comma-separated (ADMIN_TOKENS, ALERT_WEBHOOK_TOKENS)."""
    named: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        name, _, token = pair.partition(":")
        name, token = name.strip(), token.strip()
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name == ADMIN_NAME:
            raise ConfigError(f"{variable}: each entry is name:token, the name 1-64 of "
                              f"A-Z a-z 0-9 _ . - and not {ADMIN_NAME!r} (that is ADMIN_TOKEN)")
        if name in named:
            raise ConfigError(f"{variable}: {name!r} is given twice")
        if len(token) < MIN_NAMED_TOKEN:
            raise ConfigError(f"{variable}: {name!r}'s token is shorter than "
                              f"{MIN_NAMED_TOKEN} characters")
        named[name] = token
    return named


def _named_tokens(raw: str, secrets_found: Mapping[str, str]) -> dict[str, str]:
    """ADMIN_TOKENS: ``name:token`` pairs, comma-separated. No admin token may
    equal the publish token, or the publish token could change the config."""
    named = _token_pairs("ADMIN_TOKENS", raw)
    admin_tokens = [secrets_found["ADMIN_TOKEN"], *named.values()]
    if secrets_found["PUBLISH_TOKEN"] in admin_tokens:
        raise ConfigError("an admin token equals PUBLISH_TOKEN: they must differ, so that "
                          "the publish token cannot change the config")
    if len(set(admin_tokens)) != len(admin_tokens):
        raise ConfigError("ADMIN_TOKENS: two admin tokens are the same; the actor audited "
                          "would be ambiguous")
    return named


def _webhook_tokens(raw: str, secrets_found: Mapping[str, str],
                    admins: Mapping[str, str]) -> dict[str, str]:
    """ALERT_WEBHOOK_TOKENS: ``name:token`` pairs that may call only the alert
    webhook. Each must differ from every admin token and the publish token
    (or it would open their routes too), and its name from the admin tokens'
    (the actor audited would be ambiguous)."""
    named = _token_pairs("ALERT_WEBHOOK_TOKENS", raw)
    others = [secrets_found["PUBLISH_TOKEN"], secrets_found["ADMIN_TOKEN"], *admins.values()]
    for name, token in named.items():
        if name in admins:
            raise ConfigError(f"ALERT_WEBHOOK_TOKENS: {name!r} is an admin token's name "
                              "(ADMIN_TOKENS) too; the actor audited would be ambiguous")
        if token in others:
            raise ConfigError(f"ALERT_WEBHOOK_TOKENS: {name!r}'s token equals an admin or the "
                              "publish token: it must differ, or it would open their routes")
    if len(set(named.values())) != len(named):
        raise ConfigError("ALERT_WEBHOOK_TOKENS: two tokens are the same; the actor audited "
                          "would be ambiguous")
    return named


def _jwt(env: Mapping[str, str]) -> dict[str, str]:
    """The JWT_* settings, checked now: a bad key stops the start, not a connect."""
    values = {name: env.get(name.upper(), "").strip() for name in
              ("jwt_public_key", "jwt_jwks_url", "jwt_audience", "jwt_issuer")}
    values["jwt_secret"] = env.get("JWT_SECRET", "")  # not stripped: the signers use it as is
    try:
        if values["jwt_public_key"]:
            values["jwt_public_key"] = read_public_key(values["jwt_public_key"])
        jwt_verifier(secret=values["jwt_secret"], public_key=values["jwt_public_key"],
                     jwks_url=values["jwt_jwks_url"], audience=values["jwt_audience"],
                     issuer=values["jwt_issuer"])
    except JwtConfigError as exc:
        raise ConfigError(str(exc)) from None
    return values


def _job_settings(env: Mapping[str, str]) -> JobSettings:
    try:
        return job_settings_from(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _backpressure(raw: str) -> dict:
    try:
        return parse_actions(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _throttle(raw: str, defaults: dict[Priority, Rate | None]) -> dict[Priority, Rate | None]:
    try:
        return parse_rates(raw, defaults)
    except ValueError as exc:
        raise ConfigError(f"THROTTLE: {exc}") from None


def _limit(env: Mapping[str, str], name: str, default: Rate) -> Rate | None:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return parse_limit(raw)
    except ValueError:
        raise ConfigError(f"{name} takes RATE:BURST (per second, and most at once; e.g. "
                          f"50:1000) or 0 for no limit, not {raw[:80]!r}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, zero_ok: bool = False,
           maximum: float | None = None) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name} must be {'0 or more' if zero_ok else 'positive'}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:g}, not {value:g}")
    return value


def _dev_secrets(env: Mapping[str, str], var_dir: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    found = {name: env.get(name, "") for name in SECRET_NAMES}
    missing = [name for name, value in found.items() if not value]
    if not missing:
        return found, ()
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / "dev-secrets.json"
    # `make run` starts serve and jobs at once: without the lock both would
    # generate, and the one that wrote last would hold secrets that the
    # running server does not.
    with open(var_dir / "dev-secrets.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        changed = False
        for name in missing:
            if not stored.get(name):
                stored[name] = secrets.token_urlsafe(24)
                changed = True
            found[name] = stored[name]
        if changed:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(stored, handle, indent=2)
            os.replace(tmp, path)
    return found, tuple(missing)
