import json

import pytest
from itsdangerous import URLSafeTimedSerializer

from service.adapters.tokens import UserTokens
from service.config import ConfigError, Settings
from service.domain.errors import Unauthorized


def test_a_token_verifies_to_its_user():
    tokens = UserTokens("s3cret", ttl_seconds=60)
    assert tokens.verify(tokens.issue("alice")) == "alice"


@pytest.mark.parametrize("bad", [None, "", "garbage", 42, "x" * 2000])
def test_bad_tokens_are_refused(bad):
    with pytest.raises(Unauthorized):
        UserTokens("s3cret", 60).verify(bad)


def test_a_token_signed_with_another_secret_is_refused():
    forged = UserTokens("other", 60).issue("alice")
    with pytest.raises(Unauthorized, match="not valid"):
        UserTokens("s3cret", 60).verify(forged)


def test_an_expired_token_is_refused():
    tokens = UserTokens("s3cret", ttl_seconds=0)
    token = tokens.issue("alice")
    with pytest.raises(Unauthorized, match="expired"):
        import time

        time.sleep(1.1)
        tokens.verify(token)


def test_a_token_must_name_a_valid_user():
    raw = URLSafeTimedSerializer("s3cret", salt="notify.user-token.v1").dumps({"sub": "no spaces"})
    with pytest.raises(Exception):  # noqa: B017 - InvalidInput or Unauthorized, both refuse
        UserTokens("s3cret", 60).verify(raw)


def test_dev_secrets_are_generated_once_and_kept(tmp_path):
    env = {"VAR_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    second = Settings.from_env(env)
    assert first.publish_token and first.publish_token == second.publish_token
    assert set(first.generated_secrets) == {"PUBLISH_TOKEN", "ADMIN_TOKEN", "USER_TOKEN_SECRET"}
    stored = json.loads((tmp_path / "dev-secrets.json").read_text())
    assert stored["ADMIN_TOKEN"] == first.admin_token
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_explicit_secrets_win_and_are_not_reported_as_generated(tmp_path):
    env = {"VAR_DIR": str(tmp_path), "PUBLISH_TOKEN": "p", "ADMIN_TOKEN": "a",
           "USER_TOKEN_SECRET": "u"}
    settings = Settings.from_env(env)
    assert (settings.publish_token, settings.generated_secrets) == ("p", ())
    assert not (tmp_path / "dev-secrets.json").exists()


def test_defaults_follow_the_design(tmp_path):
    settings = Settings.from_env({"VAR_DIR": str(tmp_path)})
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.database_url.startswith("sqlite:///")
    assert (settings.influx_url, settings.influx_db) == ("http://127.0.0.1:8086", "notify")
    assert settings.optimization_level == "balanced"
    assert (settings.ping_interval, settings.ping_timeout) == (25.0, 8.0)


@pytest.mark.parametrize("env", [{"PORT": "http"}, {"OPTIMIZATION_LEVEL": "ludicrous"},
                                 {"PING_TIMEOUT": "0"}, {"WRITE_BATCH_WINDOW_MS": "-1"},
                                 {"WRITE_BATCH_WINDOW_MS": "250"}, {"IDLE_TIMEOUT": "0.5"},
                                 {"CACHE_TTL_S": "0.1"}, {"BATCH_SIZE": "5000"},
                                 {"MAX_CONNECTIONS_PER_USER": "20000"},
                                 {"ADMIN_TOKENS": "x:short"},
                                 {"ADMIN_TOKENS": "admin:" + "t" * 20}])
def test_bad_settings_are_named(tmp_path, env):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"VAR_DIR": str(tmp_path), **env})
    assert next(iter(env)) in str(caught.value)


def test_a_window_of_zero_is_the_default_and_may_be_said(tmp_path):
    settings = Settings.from_env({"VAR_DIR": str(tmp_path), "WRITE_BATCH_WINDOW_MS": "0"})
    assert settings.write_batch_window_ms == 0.0


def test_the_level_sets_the_defaults_and_explicit_settings_win(tmp_path):
    from service.domain.levels import LEVELS
    from service.domain.model import Priority

    for name, level in LEVELS.items():
        settings = Settings.from_env({"VAR_DIR": str(tmp_path), "OPTIMIZATION_LEVEL": name})
        assert settings.batch_size == level.batch_size
        assert settings.batch_timeout_ms == level.batch_timeout_ms
        assert settings.max_connections == level.max_connections
        assert settings.throttle_rates == level.throttle
        assert settings.gc_gen0_threshold == level.gc_gen0_threshold
    tuned = Settings.from_env({"VAR_DIR": str(tmp_path), "OPTIMIZATION_LEVEL": "maximum",
                               "BATCH_SIZE": "7", "THROTTLE": "low=off,high=1:2"})
    assert tuned.batch_size == 7 and tuned.batch_timeout_ms == 200.0
    assert tuned.throttle_rates[Priority.LOW] is None
    assert tuned.throttle_rates[Priority.HIGH].burst == 2
    assert tuned.throttle_rates[Priority.NORMAL] == LEVELS["maximum"].throttle[Priority.NORMAL]


def test_levels_order_batching_from_latency_to_throughput():
    from service.domain.levels import LEVELS

    order = ["conservative", "balanced", "aggressive", "maximum"]
    assert list(LEVELS) == order
    sizes = [LEVELS[n].batch_size for n in order]
    waits = [LEVELS[n].batch_timeout_ms for n in order]
    assert sizes == sorted(sizes) and waits == sorted(waits)
    assert all(10 <= s <= 100 for s in sizes) and all(25 <= w <= 200 for w in waits)


@pytest.mark.parametrize("bad", ["low=fast", "urgent=1:2", "low=0:5", "high=1"])
def test_a_bad_throttle_setting_is_named(tmp_path, bad):
    with pytest.raises(ConfigError, match="THROTTLE"):
        Settings.from_env({"VAR_DIR": str(tmp_path), "THROTTLE": bad})


def test_gc_tuning_freezes_start_up_and_sets_the_threshold(tmp_path):
    import gc

    from service.entrypoints.runtime import tune_gc

    settings = Settings.from_env({"VAR_DIR": str(tmp_path), "GC_GEN0_THRESHOLD": "12345"})
    before = gc.get_threshold()
    try:
        tune_gc(settings.gc_gen0_threshold, settings.gc_freeze)
        assert gc.get_threshold() == (12345, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _settings_in_child(var_dir: str, barrier, results) -> None:
    barrier.wait()
    results.put(Settings.from_env({"VAR_DIR": var_dir}).user_token_secret)


def test_processes_starting_together_agree_on_the_dev_secrets(tmp_path):
    """`make run` starts serve and jobs at the same moment; a token issued
    with the stored secret must verify in whichever process won."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    children = [context.Process(target=_settings_in_child, args=(str(tmp_path), barrier, results))
                for _ in range(6)]
    for child in children:
        child.start()
    seen = {results.get(timeout=20) for _ in children}
    for child in children:
        child.join(timeout=20)
    stored = json.loads((tmp_path / "dev-secrets.json").read_text())
    assert seen == {stored["USER_TOKEN_SECRET"]}


def test_the_pool_follows_the_level_and_its_variables(tmp_path):
    from service.adapters.database import make_engine

    base = {"VAR_DIR": str(tmp_path), "DATABASE_URL": "postgresql+psycopg2://u@127.0.0.1/x"}
    settings = Settings.from_env({**base, "OPTIMIZATION_LEVEL": "aggressive"})
    assert (settings.db_pool.size, settings.db_pool.timeout_s) == (20, 10.0)
    settings = Settings.from_env({**base, "DB_POOL_SIZE": "3", "DB_MAX_OVERFLOW": "0",
                                  "DB_POOL_TIMEOUT": "1.5", "DB_POOL_PRE_PING": "0"})
    engine = make_engine(settings.database_url, pool=settings.db_pool)  # connects to nothing
    assert (engine.pool.size(), engine.pool._max_overflow, engine.pool._timeout) == (3, 0, 1.5)
    assert engine.pool._pre_ping is False


def test_named_admin_tokens_are_read_and_kept_apart_from_the_publish_token(tmp_path):
    env = {"VAR_DIR": str(tmp_path), "PUBLISH_TOKEN": "p" * 20, "ADMIN_TOKEN": "a" * 20,
           "USER_TOKEN_SECRET": "s" * 20}
    settings = Settings.from_env({**env, "ADMIN_TOKENS": "alice:" + "x" * 16 + ", grafana:"
                                  + "y" * 16})
    assert settings.admin_credentials() == {"admin": "a" * 20, "alice": "x" * 16,
                                            "grafana": "y" * 16}
    assert settings.publish_credentials() == {"publish": "p" * 20}
    both = Settings.from_env({**env, "ADMIN_CAN_PUBLISH": "1"})
    assert set(both.publish_credentials()) == {"publish", "admin"}
    for bad in ("bob:" + "p" * 20, "bob:" + "a" * 20, f"bob:{'z' * 16},bob:{'w' * 16}"):
        with pytest.raises(ConfigError):
            Settings.from_env({**env, "ADMIN_TOKENS": bad})


@pytest.mark.parametrize(("given", "used"), [
    ("postgresql://app@db.example/notify", "postgresql+psycopg2://app@db.example/notify"),
    ("postgres://app:pw@db.example:5432/notify", "postgresql+psycopg2://app:pw@db.example:5432/notify"),
    ("postgresql+psycopg2://app@db.example/notify", "postgresql+psycopg2://app@db.example/notify"),
    ("POSTGRES://app@db.example/notify", "postgresql+psycopg2://app@db.example/notify"),
    ("sqlite:////var/lib/notify.sqlite3", "sqlite:////var/lib/notify.sqlite3"),
])
def test_every_postgresql_url_form_means_the_installed_driver(tmp_path, given, used):
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which is not
    installed: the form hosts and docs give crashed the node at start."""
    settings = Settings.from_env({"VAR_DIR": str(tmp_path), "DATABASE_URL": given})
    assert settings.database_url == used
    assert settings.storage_kind == ("sqlite" if used.startswith("sqlite") else "postgresql")


@pytest.mark.parametrize("given", ["mysql://app:s3cret@db/notify",
                                   "postgresql+psycopg://app:s3cret@db/notify", "s3cret"])
def test_any_other_database_url_is_refused_in_one_line_without_its_password(tmp_path, given):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"VAR_DIR": str(tmp_path), "DATABASE_URL": given})
    assert "DATABASE_URL must start with postgresql://" in str(refused.value)
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)


def test_the_idempotency_window_is_a_day_unless_set(tmp_path):
    assert Settings.from_env({"VAR_DIR": str(tmp_path)}).idempotency_window == 86_400.0
    assert Settings.from_env({"VAR_DIR": str(tmp_path),
                              "IDEMPOTENCY_WINDOW": "600"}).idempotency_window == 600.0
    for bad in ("0", "-5", "a day"):
        with pytest.raises(ConfigError, match="IDEMPOTENCY_WINDOW"):
            Settings.from_env({"VAR_DIR": str(tmp_path), "IDEMPOTENCY_WINDOW": bad})
