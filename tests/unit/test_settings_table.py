"""The settings table is the one source of every setting: Settings, the
level presets, the tunables and docs/configuration.md are derived from it,
and the service reads no variable the table does not list."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from service.config import Settings
from service.config_values import SPECIAL
from service.domain.levels import LEVELS, PoolSettings
from service.domain.setting import Kind, Setting
from service.domain.settings_table import LEVEL_NAMES, SECTIONS, SETTINGS, levelled, live
from service.domain.tuning import TUNABLES, preset
from service.entrypoints import config_doc

SERVICE = Path(__file__).resolve().parents[2] / "service"
# os.environ["X"], os.environ.get("X"), env.get("X"): the process environment
# (a WSGI request's environ is another thing: not matched)
READ = re.compile(r"(?:os\.environ|\benv)(?:\.get\(|\[)\s*\"([A-Z][A-Z0-9_]+)\"")
# the special rows service.config reads itself (the others: service.config_values.SPECIAL)
READ_BY_CONFIG = {"PUBLISH_TOKEN", "ADMIN_TOKEN", "USER_TOKEN_SECRET", "ADMIN_TOKENS",
                  "ALERT_WEBHOOK_TOKENS", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL",
                  "JWT_AUDIENCE", "JWT_ISSUER", "OPTIMIZATION_LEVEL"}
POOL = {"db_pool_size": "size", "db_max_overflow": "max_overflow",
        "db_pool_timeout": "timeout_s", "db_pool_pre_ping": "pre_ping"}


def test_every_variable_the_service_reads_is_a_row():
    read = {name: path for path in SERVICE.rglob("*.py")
            for name in READ.findall(path.read_text())}
    assert read, "the pattern finds the reads"
    assert {name: str(path) for name, path in read.items() if name not in SETTINGS} == {}


def test_a_row_read_elsewhere_is_read_there():
    for setting in SETTINGS.values():
        if setting.read_by:
            module = SERVICE.parent / (setting.read_by.replace(".", "/") + ".py")
            assert f'"{setting.env}"' in module.read_text(), setting.env


def test_every_special_row_has_its_reader():
    special = {s.env for s in SETTINGS.values() if s.kind is Kind.SPECIAL and not s.read_by}
    assert special == set(SPECIAL) | READ_BY_CONFIG


def test_settings_start_from_the_tables_defaults():
    settings = Settings()
    for setting in SETTINGS.values():
        if setting.read_by or setting.kind is Kind.SPECIAL:
            continue  # read elsewhere, or made from other values (DATABASE_URL, NODE_ID...)
        if setting.name in POOL:
            value = getattr(settings.db_pool, POOL[setting.name])
        elif setting.name == "throttle":
            value = settings.throttle_rates
        else:
            value = getattr(settings, setting.name)
        assert value == setting.value, setting.env


def test_the_levels_are_the_tables_columns():
    assert list(LEVELS) == list(LEVEL_NAMES)
    for level in LEVEL_NAMES:
        for setting in levelled():
            if setting.name in POOL:
                value = getattr(LEVELS[level].db_pool, POOL[setting.name])
            else:
                value = getattr(LEVELS[level], setting.name)
            assert value == setting.at(level), (level, setting.env)
    assert PoolSettings() == LEVELS["balanced"].db_pool


def test_the_tunables_are_the_live_rows_with_their_ranges():
    assert list(TUNABLES) == [s.name for s in live()]
    for setting in live():
        tunable = TUNABLES[setting.name]
        assert (tunable.env, tunable.minimum, tunable.maximum) == (
            setting.env, setting.minimum, setting.maximum)
    assert preset("maximum")["batch_timeout_ms"] == SETTINGS["BATCH_TIMEOUT_MS"].at("maximum")


def test_a_row_that_cannot_be_derived_is_refused():
    with pytest.raises(ValueError, match="one value per level"):
        Setting("X", Kind.INT, "x", per_level=(1, 2))
    with pytest.raises(ValueError, match="needs its range"):
        Setting("X", Kind.INT, "x", default=1, live=True)
    with pytest.raises(ValueError, match="only numbers and rates"):
        Setting("X", Kind.TEXT, "x", default="", live=True)


@pytest.mark.parametrize(("env", "allowed"), [({}, False), ({"ALLOW_UNPATCHED": "1"}, True),
                                               ({"ALLOW_UNPATCHED": "0"}, False)])
def test_allow_unpatched_is_off_unless_set_to_1(tmp_path, env, allowed):
    assert Settings.from_env({"VAR_DIR": str(tmp_path), **env}).allow_unpatched is allowed


def test_the_configuration_doc_is_generated_from_the_table():
    assert config_doc.main(["--check"]) == 0
    doc = config_doc.DOC.read_text()
    for setting in SETTINGS.values():
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{setting.env}` |"))
        assert setting.meaning.replace("|", "\\|") in row, setting.env


def _with(setting: Setting) -> tuple:
    return tuple((title, tuple(setting if s.env == setting.env else s for s in rows))
                 for title, rows in SECTIONS)


@pytest.mark.parametrize("change", [
    {"meaning": "something else"}, {"default": 301.0}, {"maximum": 8 * 86_400},
])
def test_the_doc_check_fails_when_the_table_changes(monkeypatch, capsys, change):
    changed = dataclasses.replace(SETTINGS["IDLE_TIMEOUT"], **change)
    monkeypatch.setattr(config_doc, "SECTIONS", _with(changed))
    assert config_doc.main(["--check"]) == 1
    assert "is stale" in capsys.readouterr().err


def test_the_doc_check_fails_when_a_level_changes(monkeypatch):
    changed = dataclasses.replace(SETTINGS["BATCH_SIZE"], per_level=(10, 50, 100, 101))
    monkeypatch.setattr(config_doc, "levelled",
                        lambda: [changed if s.env == "BATCH_SIZE" else s for s in levelled()])
    assert config_doc.main(["--check"]) == 1


def test_an_unknown_placeholder_is_an_error_not_a_blank():
    assert config_doc.render("{{BATCH_SIZE@maximum}} {{CONNECT_RATE_PER_IP}}") == "100 50:1000"
    for bad in ("{{NO_SUCH_VARIABLE}}", "{{BATCH_SIZE@turbo}}"):
        with pytest.raises(KeyError):
            config_doc.render(bad)
