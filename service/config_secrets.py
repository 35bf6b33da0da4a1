"""The secrets and tokens of the settings, read from the environment: the dev
secrets, the named admin and alert-webhook tokens, and the JWT keys.

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
from collections.abc import Mapping
from pathlib import Path

from service.adapters.jwt_tokens import JwtConfigError, jwt_verifier, read_public_key
from service.config_values import ConfigError

SECRET_NAMES = ("PUBLISH_TOKEN", "ADMIN_TOKEN", "USER_TOKEN_SECRET")
JWT_NAMES = ("JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL", "JWT_AUDIENCE", "JWT_ISSUER")
ADMIN_NAME = "admin"  # the actor ADMIN_TOKEN is audited as
MIN_NAMED_TOKEN = 16


def dev_secrets(env: Mapping[str, str], var_dir: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """The three secrets, and the names of those generated (unset in ``env``)."""
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


def named_tokens(raw: str, secrets_found: Mapping[str, str]) -> dict[str, str]:
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


def webhook_tokens(raw: str, secrets_found: Mapping[str, str],
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


def jwt_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The JWT_* settings by field name, checked now: a bad key stops the
    start, not a connect."""
    values = {name.lower(): env.get(name, "").strip() for name in JWT_NAMES}
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
