"""Reading one setting from the environment: each row of the settings table
(service.domain.settings_table) by its kind, or, for the special ones, by the
function SPECIAL names. A value the service cannot use is a ConfigError that
names the variable."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from typing import Any

from service.adapters.database import default_sqlite_url
from service.domain.backpressure_policy import parse_actions
from service.domain.levels import LEVELS
from service.domain.model import Priority
from service.domain.settings_table import SETTINGS, Kind, Setting
from service.domain.socket_rate_limits import parse_limit
from service.domain.token_bucket import Rate, parse_rates

MAX_WORKERS = int(SETTINGS["WORKERS"].maximum or 0)
_PROXY_HOPS = SETTINGS["PROXY_HOPS"]


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


def read(setting: Setting, env: Mapping[str, str], level: str) -> Any:
    """A row's value: the variable's, read by the row's kind, else the level's."""
    name, default = setting.env, setting.at(level)
    if setting.kind is Kind.INT:
        value: Any = _int(env, name, default)
    elif setting.kind is Kind.FLOAT:
        value = _float(env, name, default, zero_ok=setting.minimum == 0,
                       maximum=setting.maximum if setting.capped else None)
    elif setting.kind is Kind.FLAG:
        # off by default: on only at 1; on by default: off only at 0
        return env.get(name, "0") == "1" if not default else env.get(name, "1") != "0"
    elif setting.kind is Kind.TEXT:
        return env.get(name) or None if default is None else env.get(name, default)
    elif setting.kind is Kind.RATES:
        return _throttle(env.get(name, ""), default)
    elif setting.kind is Kind.LIMIT:
        return _limit(env, name, default)
    elif setting.kind is Kind.DURATION:
        return _duration(name, env.get(name), default)
    else:
        raise TypeError(f"{name} is read by service.config_values.SPECIAL")
    return value if setting.floor is None else max(setting.floor, value)


def read_level(env: Mapping[str, str]) -> str:
    level = env.get("OPTIMIZATION_LEVEL", SETTINGS["OPTIMIZATION_LEVEL"].default)
    if level not in LEVELS:
        raise ConfigError(
            f"OPTIMIZATION_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}"
        )
    return level


def _duration(name: str, value: str | None, default: str) -> str:
    if value is not None and not re.fullmatch(r"INF|\d+[mhdw]", value):
        raise ConfigError(f"{name} must look like 7d, 12h, 52w or INF, not {value!r}")
    return default if value is None else value


def _proxy_hops(raw: str | None, known: Mapping[str, Any]) -> int:
    hops = _int({"PROXY_HOPS": raw or ""}, "PROXY_HOPS", _PROXY_HOPS.default)
    if hops > (_PROXY_HOPS.maximum or 0):
        raise ConfigError(f"PROXY_HOPS counts the proxies in front of the node, "
                          f"{_PROXY_HOPS.minimum:g}-{_PROXY_HOPS.maximum:g}, not {hops}")
    return hops


def _workers(raw: str | None, known: Mapping[str, Any]) -> int:
    """WORKERS: processes of `serve` (0 when unset: serve picks its default)."""
    raw = raw or ""
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


def _database_url(raw: str | None, known: Mapping[str, Any]) -> str:
    return normalize_database_url(raw or "") or default_sqlite_url(known["var_dir"])


def service_url(raw: str, port: int) -> str:
    """SERVICE_URL: an absolute http(s) URL, without a trailing slash; by
    default this node on the loopback."""
    value = raw.strip().rstrip("/") or f"http://127.0.0.1:{port}"
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ConfigError(f"SERVICE_URL must be an absolute http:// or https:// URL, "
                          f"not {raw[:80]!r}")
    return value


def _redis_channel(raw: str | None, known: Mapping[str, Any]) -> str:
    value: str = SETTINGS["REDIS_CHANNEL"].default if raw is None else raw
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise ConfigError("REDIS_CHANNEL is 1-64 of A-Z a-z 0-9 _ . : -, not "
                          f"{value[:80]!r}")
    return value


def _node_id(raw: str | None, known: Mapping[str, Any]) -> str:
    return raw or f"{socket.gethostname()}-{known['port']}"


def _backpressure(raw: str | None, known: Mapping[str, Any]) -> Any:
    try:
        return parse_actions(raw or "")
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


# The special rows' readers: (the raw value or None, what was read so far) ->
# the value. The secrets, the tokens and JWT_* are read by service.config_secrets,
# the level by read_level, and a row with ``read_by`` by that module.
SPECIAL: dict[str, Callable[[str | None, Mapping[str, Any]], Any]] = {
    "WORKERS": _workers,
    "NODE_ID": _node_id,
    "SERVICE_URL": lambda raw, known: service_url(raw or "", known["port"]),
    "PROXY_HOPS": _proxy_hops,
    "BACKPRESSURE": _backpressure,
    "DATABASE_URL": _database_url,
    "REDIS_CHANNEL": _redis_channel,
}
