"""The library patches as the composition root wires them: what `serve` and
`jobs` do on a version mismatch, and the connection limit that follows the
memory figure in force (service.adapters.patches, service.domain.capacity)."""

from __future__ import annotations

import pytest
from sqlalchemy.pool import QueuePool

from service.adapters.patches import (
    ENGINEIO_SESSIONS,
    PATCHES,
    POOL_CHECKOUT,
    PatchesInForce,
    UnpatchedLibrary,
    check,
)
from service.adapters.patches.pool_checkout import TimedQueuePool
from service.bootstrap import create_app
from service.config import Settings
from service.entrypoints import runtime
from service.wiring.tuning_factory import connection_policy
from tests.support.api_app import build_app
from tests.support.schema import migrate_url

EVERY_PATCH = frozenset(p.name for p in PATCHES)
WITHOUT_SESSIONS = PatchesInForce(EVERY_PATCH - {ENGINEIO_SESSIONS})


def test_a_mismatch_refuses_to_start_with_its_exit_status_and_says_why(monkeypatch, capsys):
    mismatch = check(True, installed=lambda package: "0.0.1").left_out

    def refuse(_allow: bool) -> PatchesInForce:
        raise UnpatchedLibrary(mismatch)

    monkeypatch.setattr(runtime, "check", refuse)
    assert runtime.library_patches(Settings()) is None
    assert "ALLOW_UNPATCHED=1" in capsys.readouterr().err
    assert runtime.UNPATCHED_EXIT not in (0, 2, 3, 4, 5, 6)  # the other statuses' meanings


def test_allow_unpatched_reaches_the_check(monkeypatch):
    asked: list[bool] = []
    monkeypatch.setattr(runtime, "check", lambda allow: asked.append(allow) or WITHOUT_SESSIONS)
    assert runtime.library_patches(Settings(allow_unpatched=True)) is WITHOUT_SESSIONS
    assert asked == [True]


@pytest.mark.parametrize("connection_bytes, expected", [
    (PatchesInForce(EVERY_PATCH).connection_bytes, 15_000),  # the level's own limit
    (WITHOUT_SESSIONS.connection_bytes, 8_804),  # what 512 MB holds at upstream's figure
])
def test_balanced_limit_follows_the_memory_figure_in_force(connection_bytes, expected):
    settings = Settings()
    policy = connection_policy(settings, settings.tunables(), connection_bytes)
    assert policy.max_per_node == expected


def test_an_app_built_without_the_sessions_patch_admits_what_fits_and_keeps_it(tmp_path):
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'n.sqlite3'}",
                                  "VAR_DIR": str(tmp_path / "var"), "TELEMETRY_ENABLED": "0"})
    migrate_url(settings.database_url)
    app = create_app(settings, WITHOUT_SESSIONS)
    try:
        assert app.patches is WITHOUT_SESSIONS
        assert app.hub.policy.max_per_node == 8_804
        assert not isinstance(app.engine.pool, TimedQueuePool) or POOL_CHECKOUT in app.patches
        # a live change of the level keeps to what fits, too
        app.live_config.change({"level": "aggressive", "reason": "figure in force"})
        assert app.hub.policy.max_per_node == 17_608
    finally:
        app.close()


def test_the_pool_patch_left_out_gives_sqlalchemys_own_pool(tmp_path):
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'n.sqlite3'}",
                                  "VAR_DIR": str(tmp_path / "var"), "TELEMETRY_ENABLED": "0"})
    migrate_url(settings.database_url)
    app = create_app(settings, PatchesInForce(EVERY_PATCH - {POOL_CHECKOUT}))
    try:
        assert type(app.engine.pool) is QueuePool
    finally:
        app.close()


def test_with_every_patch_in_force_the_app_is_as_before(tmp_path):
    app = build_app(f"sqlite:///{tmp_path / 'n.sqlite3'}", str(tmp_path / "var"))
    try:
        assert app.patches.names == EVERY_PATCH
        assert app.hub.policy.max_per_node == 15_000
        assert isinstance(app.engine.pool, TimedQueuePool)
    finally:
        app.close()
