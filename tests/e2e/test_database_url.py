"""DATABASE_URL as hosting providers and docs write it: ``postgresql://`` and
``postgres://`` start a node on real PostgreSQL; anything else is refused in
one line, and the node does not start."""

import subprocess
import sys

import pytest

from tests.support.repository import ROOT
from tests.support.server_process import start_server, stop_server


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_plain_postgresql_url_starts_a_node_on_postgresql(pg_url, influx_database, tmp_path,
                                                            scheme):
    plain = scheme + "://" + pg_url.split("://", 1)[1]  # the fixture names the driver
    server = start_server({"DATABASE_URL": plain, "INFLUX_DB": influx_database}, tmp_path)
    try:
        metrics = server.request("GET", "/admin/api/performance/metrics",
                                 token=server.env["ADMIN_TOKEN"]).json()
        assert metrics["storage"]["kind"] == "postgresql"
        assert server.publish({"user_id": "ann", "category": "c", "payload": {}})["offset"] == 1
    finally:
        assert stop_server(server) == 0, server.log_text()


def test_another_database_url_is_refused_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "service", "serve"], cwd=ROOT, capture_output=True, text=True,
        timeout=30, env={"PATH": "/usr/bin:/bin", "VAR_DIR": str(tmp_path),
                         "DATABASE_URL": "mysql://app:s3cret@127.0.0.1/notify"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "configuration error: DATABASE_URL must start with postgresql://, postgres:// or "
        "sqlite:///, not mysql://"]
