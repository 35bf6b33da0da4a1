"""``serve --workers N``: how many workers, when they are refused, what a
worker is (its node id, its share of the node's limits), and how the
supervisor ends when a worker exits."""

from __future__ import annotations

import os
import signal
import socket

import gevent
import pytest
from gevent import subprocess as gsubprocess

from service.config import ConfigError, Settings
from service.entrypoints import cli, workers
from service.entrypoints.workers import (
    WorkersRefused,
    as_worker,
    parse_worker,
    resolve_workers,
    reuseport_listeners,
    wait_for_workers,
)
from tests.support.api_app import create_test_app

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/notify"
REDIS = "redis://127.0.0.1:6379/0"


def settings(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"VAR_DIR": str(tmp_path), "PUBLISH_TOKEN": "p", "ADMIN_TOKEN": "a",
                              "USER_TOKEN_SECRET": "s", "NODE_ID": "n1", **env})


@pytest.fixture
def serve_env(monkeypatch, tmp_path):
    """The environment `python -m service serve` would read, without Redis."""
    for name in ("REDIS_URL", "WORKERS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"VAR_DIR": str(tmp_path), "PUBLISH_TOKEN": "p", "ADMIN_TOKEN": "a",
                        "USER_TOKEN_SECRET": "s"}.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_workers_above_one_without_redis_are_refused_in_one_line(serve_env, capsys):
    assert cli.main(["serve", "--workers", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("refusing to start: --workers 2 needs REDIS_URL")


def test_the_workers_setting_is_refused_by_its_own_name(serve_env, capsys):
    serve_env.setenv("WORKERS", "3")
    assert cli.main(["serve"]) == 2
    assert "WORKERS=3 needs REDIS_URL" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "two", "257"])
def test_the_workers_argument_is_a_count_of_processes(serve_env, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--workers", value])
    assert exit_.value.code == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "x", "1000"])
def test_the_workers_setting_is_checked(tmp_path, value):
    with pytest.raises(ConfigError, match="WORKERS"):
        settings(tmp_path, WORKERS=value)


def test_the_default_is_every_core_with_redis_and_postgresql_else_one(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "cpu_count", lambda: 3)
    assert resolve_workers(None, settings(tmp_path)) == 1  # make run: embedded defaults
    assert resolve_workers(None, settings(tmp_path, REDIS_URL=REDIS)) == 1  # SQLite
    assert resolve_workers(None, settings(tmp_path, DATABASE_URL=PG)) == 1  # no Redis
    both = settings(tmp_path, REDIS_URL=REDIS, DATABASE_URL=PG)
    assert resolve_workers(None, both) == 3
    assert resolve_workers(None, settings(tmp_path, REDIS_URL=REDIS, DATABASE_URL=PG,
                                          WORKERS="2")) == 2
    assert resolve_workers(1, both) == 1, "the argument wins over the setting and the default"
    assert resolve_workers(4, settings(tmp_path, REDIS_URL=REDIS)) == 4, "SQLite when asked"
    assert resolve_workers(1, settings(tmp_path)) == 1
    with pytest.raises(WorkersRefused, match="REDIS_URL"):
        resolve_workers(2, settings(tmp_path, DATABASE_URL=PG))


def test_a_worker_is_a_node_of_its_own_with_its_share_of_the_connections(tmp_path):
    node = settings(tmp_path, MAX_CONNECTIONS="15000")
    first, second = as_worker(node, 1, 2), as_worker(node, 2, 2)
    assert (first.node_id, second.node_id) == ("n1-w1", "n1-w2")
    assert first.spool_dir("serve") != second.spool_dir("serve") != node.spool_dir("serve")
    assert node.per_worker(15_000) == 15_000, "a node of one process keeps the whole limit"
    assert first.per_worker(15_000) == 7_500
    assert as_worker(node, 1, 3).per_worker(10) == 3, "the shares never add up to more"
    assert as_worker(node, 1, 4).per_worker(1) == 1, "but each worker takes at least one"


def test_a_worker_applies_its_share_at_start_and_on_every_live_change(tmp_path):
    node = settings(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'log.sqlite3'}",
                    INFLUX_URL="http://127.0.0.1:9", TELEMETRY_ENABLED="0")
    app = create_test_app(as_worker(node, 2, 4))
    try:
        assert app.hub.policy.max_per_node == 15_000 // 4  # balanced
        app.live_config.change({"parameters": {"max_connections": 2000}})
        assert app.hub.policy.max_per_node == 500
        app.live_config.change({"parameters": {"max_connections": None},
                                "level": "conservative"})
        assert app.hub.policy.max_per_node == 5_000 // 4
        assert app.live_config.values["max_connections"] == 5_000, "the node's, as configured"
    finally:
        app.close()


@pytest.mark.parametrize("spec", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_worker_spec_is_k_of_n(spec):
    with pytest.raises(ValueError):
        parse_worker(spec)


def test_reuseport_listeners_share_one_port_and_a_taken_port_is_refused():
    listeners = reuseport_listeners("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in listeners}
        assert len(ports) == 1
        with pytest.raises(OSError):
            reuseport_listeners("127.0.0.1", ports.pop(), 2)
    finally:
        for s in listeners:
            s.close()
    with socket.socket() as plain:  # not ours, no SO_REUSEPORT
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        with pytest.raises(OSError):
            reuseport_listeners("127.0.0.1", plain.getsockname()[1], 2)


def test_a_worker_that_fails_stops_the_others_and_gives_its_status():
    failing = gsubprocess.Popen(["sh", "-c", "sleep 0.2; exit 4"])
    other = gsubprocess.Popen(["sleep", "60"])
    assert wait_for_workers([failing, other], timeout=10) == 4
    assert other.returncode == -15, "stopped with SIGTERM"


def test_a_worker_that_stops_unasked_is_a_failure_even_with_status_0():
    assert wait_for_workers([gsubprocess.Popen(["true"]),
                             gsubprocess.Popen(["sleep", "60"])], timeout=10) == 1


def test_a_worker_that_ignores_sigterm_is_killed_after_the_bound():
    stubborn = gsubprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 60"])
    failing = gsubprocess.Popen(["sh", "-c", "sleep 0.2; exit 3"])
    assert wait_for_workers([stubborn, failing], timeout=0.5) == 3
    assert stubborn.returncode == -9


def test_sigterm_to_the_supervisor_stops_every_worker_and_exits_0():
    clean = gsubprocess.Popen(["sh", "-c", "trap 'exit 0' TERM; sleep 60 & wait"])
    starting = gsubprocess.Popen(["sleep", "60"])  # dies of the SIGTERM itself: still clean
    gevent.spawn_later(0.3, os.kill, os.getpid(), signal.SIGTERM)  # once the handler is in
    assert wait_for_workers([clean, starting], timeout=10) == 0
    assert (clean.returncode, starting.returncode) == (0, -signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "the handler before is back"
