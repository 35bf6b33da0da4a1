"""provisioning/influxdb/: the InfluxDB 2.x set-up script, run with bash
against a stand-in ``influx`` CLI that keeps the server's state and records
every call (tests/support/influx_cli_stub.py says which of InfluxDB's and the
CLI's behaviours it reproduces).

What must hold after it: database ``notify`` reads and writes raw telemetry
in the ``notify`` bucket by default (rp ``raw``), each rollup policy the jobs
write has its own bucket and a non-default mapping, and Grafana's
credentials read those three buckets and nothing else.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from service.domain.measurements import ROLLUP_POLICIES
from tests.support import influx_cli_stub as stub
from tests.support.compose import ROOT, compose_services, environment_of, notify_datasource

SCRIPT_DIR = ROOT / "provisioning" / "influxdb"
DB = "notify"
RAW_RP = "raw"
READ_USER = "grafana"


def script() -> Path:
    [found] = sorted(SCRIPT_DIR.glob("*.sh"))
    return found


def run_script(directory: Path, state: dict, token: str, path: Path | None = None):
    env = {**os.environ, **stub.install(directory, state), "DOCKER_INFLUXDB_INIT_ORG": stub.ORG,
           "DOCKER_INFLUXDB_INIT_BUCKET": DB, "INFLUX_READ_TOKEN": token}
    return subprocess.run(["bash", str(path or script())], env=env, capture_output=True,
                          text=True, timeout=60)


def bucket_ids(state: dict) -> dict[str, str]:
    return {b["name"]: b["id"] for b in state["buckets"]}


def physical(state: dict) -> dict[str, dict]:
    return {m["rp"]: m for m in state["dbrps"] if m["db"] == DB}


@pytest.fixture
def token() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def first_start(tmp_path, token):
    """What the influxdb image has made when it runs the script: the org, the
    operator and the set-up bucket, nothing else."""
    result = run_script(tmp_path, stub.new_state(DB), token)
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_there_is_one_executable_script_and_compose_runs_it_at_first_start():
    path = script()
    assert os.access(path, os.X_OK), f"{path.name} is not executable: run-parts would skip it"
    subprocess.run(["bash", "-n", str(path)], check=True)
    influx = compose_services()["influxdb"]
    assert "./provisioning/influxdb:/docker-entrypoint-initdb.d:ro" in influx["volumes"]
    env = environment_of(influx)
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] == DB
    assert "INFLUX_READ_TOKEN" in env["INFLUX_READ_TOKEN"], "the script needs Grafana's password"
    assert environment_of(compose_services()["notify"])["INFLUX_DB"] == DB


def test_the_raw_mapping_is_created_first_and_is_the_default(first_start):
    calls = stub.calls(first_start)
    state = stub.state_of(first_start)
    creates = [c for c in calls if c[:3] == ["v1", "dbrp", "create"]]
    assert creates, "no DBRP mapping created"
    first = creates[0]
    assert first[first.index("--rp") + 1] == RAW_RP, f"first mapping: {first}"
    assert first[first.index("--bucket-id") + 1] == bucket_ids(state)[DB]
    # InfluxDB's own answer: raw is the only default, the virtual notify/autogen is not
    assert stub.default_rps(state, DB) == [RAW_RP]
    assert physical(state)[RAW_RP]["bucket_id"] == bucket_ids(state)[DB]


def test_only_the_raw_mapping_is_ever_asked_to_be_the_default(first_start):
    state = stub.state_of(first_start)
    raw_id = physical(state)[RAW_RP]["id"]
    for call in stub.calls(first_start):
        if "--default" in call and call[:2] == ["v1", "dbrp"] and call[2] != "list":
            target = call[call.index("--rp") + 1] if "--rp" in call else None
            assert target == RAW_RP or call[call.index("--id") + 1] == raw_id, call


def test_every_rollup_policy_has_its_bucket_and_a_mapping_that_is_not_the_default(first_start):
    state = stub.state_of(first_start)
    ids = bucket_ids(state)
    mapped = physical(state)
    for rp in ROLLUP_POLICIES.values():
        assert f"{DB}_{rp}" in ids, f"no bucket for {rp}"
        assert mapped[rp]["bucket_id"] == ids[f"{DB}_{rp}"], mapped.get(rp)
        assert mapped[rp]["default"] is False
    assert set(mapped) == {RAW_RP, *ROLLUP_POLICIES.values()}


def test_grafana_may_read_the_three_buckets_and_nothing_else(first_start, token):
    state = stub.state_of(first_start)
    [auth] = state["auths"]
    ids = bucket_ids(state)
    assert auth["username"] == READ_USER
    assert auth["password"] == token
    assert sorted(auth["read"]) == sorted(
        ids[name] for name in [DB, *(f"{DB}_{rp}" for rp in ROLLUP_POLICIES.values())])
    assert auth["write"] == []


def test_grafanas_datasource_logs_in_with_those_credentials():
    """InfluxQL's /query checks a v1 authorization's password only for Basic
    (or u/p) credentials; "Token user:pass" is looked up as a v2 token
    (influxdb v1/authorization/authorizer.go, Authorize)."""
    ds = notify_datasource()
    assert ds.get("basicAuth") is True
    assert ds.get("basicAuthUser") == READ_USER
    assert (ds.get("secureJsonData") or {}).get("basicAuthPassword") == "${INFLUX_READ_TOKEN}"
    assert "httpHeaderName1" not in (ds.get("jsonData") or {}), "a header would replace it"
    grafana = environment_of(compose_services()["grafana"])
    assert "INFLUX_READ_TOKEN" in grafana and "INFLUX_TOKEN" not in grafana


def test_running_it_again_changes_nothing_but_the_credentials(first_start, token):
    before = stub.state_of(first_start)
    result = run_script(first_start, before, token)
    assert result.returncode == 0, result.stderr
    creates = [c for c in stub.calls(first_start) if c[1:3] == ["create"] or c[2:3] == ["create"]]
    assert [c[:3] for c in creates] == [["v1", "auth", "create"]], creates
    after = stub.state_of(first_start)
    assert after["buckets"] == before["buckets"] and after["dbrps"] == before["dbrps"]
    assert len(after["auths"]) == 1


def test_it_repairs_a_volume_made_by_the_old_script(tmp_path, token):
    """The old init-rollups.sh mapped rollup_1m first: it became the default."""
    state = stub.new_state(DB)
    for rp in ROLLUP_POLICIES.values():
        bucket = stub.add_bucket(state, f"{DB}_{rp}", "90d")
        stub.create_dbrp(state, DB, rp, bucket["id"])
    assert stub.default_rps(state, DB) == ["rollup_1m", "autogen"]
    result = run_script(tmp_path, state, token)
    assert result.returncode == 0, result.stderr
    assert stub.default_rps(stub.state_of(tmp_path), DB) == [RAW_RP]


@pytest.mark.parametrize("bad", ["", "short", "x" * 73])
def test_it_refuses_an_unusable_read_token_before_changing_anything(tmp_path, bad):
    result = run_script(tmp_path, stub.new_state(DB), bad)
    assert result.returncode != 0
    assert "INFLUX_READ_TOKEN" in result.stderr
    assert stub.calls(tmp_path) == []


def test_it_fails_loudly_when_the_cli_does(tmp_path, token):
    # no set-up bucket: nothing to map raw to
    result = run_script(tmp_path, stub.new_state(), token)
    assert result.returncode != 0
    assert "notify" in result.stderr


def test_the_stub_behaves_like_influxdb():
    """The stub's own semantics, which the tests above rely on."""
    state = stub.new_state(DB)
    assert stub.default_rps(state, DB) == ["autogen"]
    rollup = stub.add_bucket(state, f"{DB}_rollup_1m", "90d")
    stub.create_dbrp(state, DB, "rollup_1m", rollup["id"])
    # the first physical mapping is the default, and the virtual one stays default
    assert stub.default_rps(state, DB) == ["rollup_1m", "autogen"]
    stub.run(state, ["v1", "dbrp", "create", "--org", stub.ORG, "--db", DB, "--rp", "raw",
                     "--bucket-id", bucket_ids(state)[DB], "--default"])
    assert stub.default_rps(state, DB) == ["rollup_1m"], "--default is not sent by the CLI"
    with pytest.raises(stub.CliError):
        stub.run(state, ["bucket", "list", "--org", stub.ORG, "--name", "missing"])
    with pytest.raises(stub.CliError, match="not defined"):
        stub.run(state, ["v1", "dbrp", "create", "--bucket", "x"])
