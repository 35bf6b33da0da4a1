"""Settings from environment variables (twelve-factor), with dev defaults.

Every variable is a row of the settings table (service.domain.settings_table):
its default, its level presets, its range and its meaning are there, and
docs/configuration.md is generated from it. ``Settings.from_env`` reads each
row by its kind (service.config_values; the secrets and tokens:
service.config_secrets). A bad value stops the start with a ConfigError that
names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.adapters.influx import InfluxSettings, Retention
from service.config_secrets import (
    ADMIN_NAME,
    JWT_NAMES,
    SECRET_NAMES,
    dev_secrets,
    jwt_settings,
    named_tokens,
    webhook_tokens,
)
from service.config_values import (
    MAX_WORKERS,
    SPECIAL,
    ConfigError,
    normalize_database_url,
    read,
    read_level,
    service_url,
)
from service.domain.errors import InvalidInput
from service.domain.job_settings import JobSettings, job_settings_from
from service.domain.levels import PoolSettings
from service.domain.settings_table import DEFAULT_LEVEL, SETTINGS, defaults
from service.domain.token_bucket import Rate, format_rates
from service.domain.tuning import TUNABLES

__all__ = ["ADMIN_NAME", "MAX_WORKERS", "ConfigError", "Settings", "normalize_database_url"]

_D = defaults()  # every setting's default, by name (a level's: the default level's)
# the Settings field a row fills, where it is not the row's name
_FIELDS = {"throttle": "throttle_rates", "admin_tokens": "named_admin_tokens",
           "backpressure": "backpressure_actions"}


@dataclass(frozen=True)
class Settings:
    """The node's settings: one field per row of the settings table (the
    meaning of each is there), and what start-up makes of them."""

    host: str = _D["host"]
    port: int = _D["port"]
    database_url: str = _D["database_url"]  # from_env: SQLite in VAR_DIR when unset
    influx_url: str = _D["influx_url"]
    influx_db: str = _D["influx_db"]
    influx_token: str | None = _D["influx_token"]
    influx_username: str | None = _D["influx_username"]
    influx_password: str | None = _D["influx_password"]
    redis_url: str | None = _D["redis_url"]
    redis_channel: str = _D["redis_channel"]
    write_only: bool = _D["write_only"]
    log_follow_interval: float = _D["log_follow_interval"]
    presence_interval: float = _D["presence_interval"]
    proxy_hops: int = _D["proxy_hops"]
    publish_token: str = _D["publish_token"]
    admin_token: str = _D["admin_token"]
    named_admin_tokens: dict = field(default_factory=dict, compare=False)  # ADMIN_TOKENS
    alert_webhook_tokens: dict = field(default_factory=dict, compare=False)
    admin_can_publish: bool = _D["admin_can_publish"]
    user_token_secret: str = _D["user_token_secret"]
    user_token_ttl: int = _D["user_token_ttl"]
    jwt_secret: str = field(default=_D["jwt_secret"], repr=False)
    jwt_public_key: str = _D["jwt_public_key"]  # from_env: the PEM text
    jwt_jwks_url: str = _D["jwt_jwks_url"]
    jwt_audience: str = _D["jwt_audience"]
    jwt_issuer: str = _D["jwt_issuer"]
    optimization_level: str = _D["optimization_level"]
    demo: bool = _D["demo"]
    grafana_url: str = _D["grafana_url"]
    service_url: str = service_url(_D["service_url"], _D["port"])
    var_dir: str = _D["var_dir"]
    node_id: str = _D["node_id"]  # from_env: <hostname>-<port> when unset
    ping_interval: float = _D["ping_interval"]
    ping_timeout: float = _D["ping_timeout"]
    cors_allowed_origins: str = _D["cors_allowed_origins"]
    telemetry_spool_max_bytes: int = _D["telemetry_spool_max_bytes"]
    influx_raw_retention: str = _D["influx_raw_retention"]
    influx_rollup_1m_retention: str = _D["influx_rollup_1m_retention"]
    influx_rollup_1h_retention: str = _D["influx_rollup_1h_retention"]
    db_slow_ms: float = _D["db_slow_ms"]
    telemetry_retry_max_s: float = _D["telemetry_retry_max_s"]
    telemetry_enabled: bool = _D["telemetry_enabled"]
    max_connections: int = _D["max_connections"]
    max_connections_per_user: int = _D["max_connections_per_user"]
    idle_timeout: float = _D["idle_timeout"]
    batch_size: int = _D["batch_size"]
    send_queue_max_bytes: int = _D["send_queue_max_bytes"]
    socket_unsent_max_bytes: int = _D["socket_unsent_max_bytes"]
    throttle_rates: dict = field(default_factory=lambda: dict(_D["throttle"]), compare=False)
    batch_timeout_ms: float = _D["batch_timeout_ms"]
    gc_gen0_threshold: int = _D["gc_gen0_threshold"]
    gc_freeze: bool = _D["gc_freeze"]
    offline_queue_max: int = _D["offline_queue_max"]
    offline_queue_max_age: float = _D["offline_queue_max_age"]
    offline_trim_interval: float = _D["offline_trim_interval"]
    idempotency_window: float = _D["idempotency_window"]
    memory_budget_mb: int = _D["memory_budget_mb"]
    compression_min_bytes: int = _D["compression_min_bytes"]
    write_batch_size: int = _D["write_batch_size"]
    db_pool: PoolSettings = PoolSettings()  # DB_POOL_*
    write_batch_window_ms: float = _D["write_batch_window_ms"]
    cache_entries: int = _D["cache_entries"]
    cache_ttl_s: float = _D["cache_ttl_s"]
    cache_max_bytes: int = _D["cache_max_bytes"]
    cache_compress_min_bytes: int = _D["cache_compress_min_bytes"]
    backpressure_high_water_bytes: int = _D["backpressure_high_water_bytes"]
    leak_grace_s: float = _D["leak_grace_s"]
    auto_rollback: bool = _D["auto_rollback"]
    allow_unpatched: bool = _D["allow_unpatched"]
    # the analysis jobs' intervals and windows (JOB_INTERVALS, *_WINDOW_S)
    jobs: JobSettings = field(default_factory=JobSettings, compare=False)
    backpressure_actions: dict = field(default_factory=lambda: dict(_D["backpressure"]),
                                       compare=False)
    # Socket.IO rate limits (domain/socket_rate_limits.py): None when off
    connect_rate_per_ip: Rate | None = _D["connect_rate_per_ip"]
    connect_rate_per_user: Rate | None = _D["connect_rate_per_user"]
    event_rate_per_ip: Rate | None = _D["event_rate_per_ip"]
    event_rate_per_user: Rate | None = _D["event_rate_per_user"]
    generated_secrets: tuple[str, ...] = field(default=(), compare=False)
    env_tuned: tuple[str, ...] = ()  # tunables given by environment variables
    throttle_spec: str = ""  # THROTTLE as given: it may name only some priorities
    # `serve --workers`: WORKERS as given (0: unset, the default applies); in a
    # worker process, how many workers its node has (service.entrypoints.workers)
    workers: int = _D["workers"]
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
        settings = cls(**_read_env(env))
        _check_ranges(settings)
        if settings.write_only and not settings.redis_url:
            raise ConfigError("WRITE_ONLY=1 needs REDIS_URL: a publish-only node hands its "
                              "notifications to the other nodes through Redis")
        return settings


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings' fields from the environment: every row of the table in its
    order, after those the others depend on (the directory, the port, the
    secrets and the level)."""
    var_dir = env.get("VAR_DIR", _D["var_dir"])
    known: dict[str, Any] = {"var_dir": var_dir,
                             "port": read(SETTINGS["PORT"], env, DEFAULT_LEVEL)}
    found, generated = dev_secrets(env, Path(var_dir))
    known.update({name.lower(): found[name] for name in SECRET_NAMES})
    level = known["optimization_level"] = read_level(env)
    for setting in SETTINGS.values():
        if setting.read_by or setting.name in known:
            continue
        if setting.env == "ADMIN_TOKENS":
            known[setting.name] = named_tokens(env.get(setting.env, ""), found)
        elif setting.env == "ALERT_WEBHOOK_TOKENS":
            known[setting.name] = webhook_tokens(env.get(setting.env, ""), found,
                                                 known["admin_tokens"])
        elif setting.env in JWT_NAMES:
            known.update(jwt_settings(env))
        elif setting.env in SPECIAL:
            known[setting.name] = SPECIAL[setting.env](env.get(setting.env), known)
        else:
            known[setting.name] = read(setting, env, level)
    values = {_FIELDS.get(name, name): value for name, value in known.items()}
    values["db_pool"] = PoolSettings(
        size=values.pop("db_pool_size"), max_overflow=values.pop("db_max_overflow"),
        timeout_s=values.pop("db_pool_timeout"), pre_ping=values.pop("db_pool_pre_ping"))
    try:  # the rows read by service.domain.job_settings
        values["jobs"] = job_settings_from(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    values.update(generated_secrets=generated, throttle_spec=env.get("THROTTLE", ""),
                  env_tuned=tuple(t.name for t in TUNABLES.values() if env.get(t.env, "")))
    return values


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
