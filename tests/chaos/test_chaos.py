"""A short seeded chaos run (bench/chaos.py), as `make test` runs it: two
nodes on their own PostgreSQL, Redis and InfluxDB, 200 clients coming and
going, a minute of publishing under the faults seed 7 draws, and not one
violation of the delivery promise in the whole history."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--seed", "7", "--minutes", "1", "--nodes", "2", "--clients", "200"]


def test_a_seeded_minute_of_faults_keeps_the_delivery_promise():
    done = subprocess.run([sys.executable, "-m", "bench", "chaos", *ARGS], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 0 and lines, (
        f"python -m bench chaos {' '.join(ARGS)} exited {done.returncode}:\n"
        f"{done.stderr[-6000:]}")
    result = json.loads(lines[-1])
    history = result["history_dir"]
    summary = {k: result[k] for k in ("violations", "counts", "faults", "faults_failed",
                                      "publishes", "acknowledged", "deliveries_checked",
                                      "unexpected_exits", "network")}
    assert result["violations"] == 0, (
        f"{summary}\nfirst violations: {json.dumps(result['first_violations'], indent=1)}\n"
        f"history (all of check.json there): {history}\n{done.stderr[-3000:]}")
    assert result["faults_injected"] >= 3, (summary, history)
    assert not result["faults_failed"], (summary, history)
    assert result["deliveries_checked"] > 0, (summary, history)
    # live, not only safe: a run that acknowledged little would check little
    assert result["publishes"] > 0, (summary, history)
    assert result["acknowledged"] >= 0.95 * result["publishes"], (summary, history)
    assert result["seed"] == 7 and result["network"], summary
    assert "seed 7" in done.stderr  # printed at the start, so a failure replays
    shutil.rmtree(history, ignore_errors=True)  # kept only when something failed
