"""A node's app wired by create_app with known tokens, for tests of the HTTP
API, and the OpenAPI document walked operation by operation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from service.adapters.patches import check
from service.bootstrap import App, create_app
from service.config import Settings
from tests.support.schema import migrate_url

PUBLISH_TOKEN = "contract-publish-token-0123456789"
ADMIN_TOKEN = "contract-admin-token-0123456789"
PUBLIC = {("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/admin/performance"),
          ("GET", "/docs/"), ("GET", "/docs/{page}")}
WEBHOOK = ("POST", "/api/v1/alerts/grafana")  # an admin token, or one of ALERT_WEBHOOK_TOKENS
# the publish token, or the user's own token
USER_ROUTES = {("GET", "/api/v1/users/{user_id}/notifications"),
               ("POST", "/api/v1/users/{user_id}/read")}
METHODS = ("get", "put", "post", "delete", "patch")


def create_test_app(settings: Settings) -> App:
    """The app of ``settings``, built as `serve` builds it: the schema
    migrated and the library patches checked first; nothing started."""
    migrate_url(settings.database_url)
    return create_app(settings, check(settings.allow_unpatched))


def build_app(database_url: str, var_dir: str, **env: str) -> App:
    """A node on SQLite, wired by create_app as `serve` wires it, with known
    tokens; nothing started in the background."""
    settings = Settings.from_env({
        "DATABASE_URL": database_url, "VAR_DIR": var_dir,
        "PUBLISH_TOKEN": PUBLISH_TOKEN, "ADMIN_TOKEN": ADMIN_TOKEN,
        "USER_TOKEN_SECRET": "contract-user-secret", "NODE_ID": "contract",
        "INFLUX_URL": "http://127.0.0.1:9", "TELEMETRY_ENABLED": "0",
        "GRAFANA_URL": "http://grafana.example:3000", **env})
    return create_test_app(settings)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation the document describes."""
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]
