"""The ``detect-changes`` command's contract, run as the user runs it:
``python -m service detect-changes --input FILE.csv``."""

import json
import math
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, "-m", "service", "detect-changes", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def series(n=600, step_at=300, factor=1.2, seed=1):
    rng = random.Random(seed)
    return [100 * (factor if i >= step_at else 1.0) * rng.lognormvariate(0, 0.05)
            for i in range(n)]


def write(path, values, epoch=False, start=datetime(2026, 11, 1, tzinfo=UTC), minutes=5):
    rows = []
    for i, v in enumerate(values):
        moment = start + timedelta(minutes=minutes * i)
        rows.append(f"{moment.timestamp():.0f}" if epoch else moment.isoformat())
        rows[-1] += f",{v:.4f}"
    path.write_text("time,value\n" + "\n".join(rows) + "\n")
    return str(path)


def test_a_step_comes_out_as_json_on_stdout(tmp_path):
    result = run("--input", write(tmp_path / "s.csv", series()))
    assert (result.returncode, result.stderr) == (0, "")
    points = json.loads(result.stdout)
    assert len(points) == 1
    assert set(points[0]) == {"index", "kind", "direction", "magnitude_pct", "confidence"}
    assert abs(points[0]["index"] - 300) <= 2
    assert points[0]["direction"] == "up"
    assert points[0]["magnitude_pct"] == pytest.approx(20, abs=3)


def test_epoch_seconds_and_a_step_down(tmp_path):
    result = run("--input", write(tmp_path / "s.csv", series(factor=0.8), epoch=True))
    assert result.returncode == 0, result.stderr
    [point] = json.loads(result.stdout)
    assert (point["direction"], abs(point["index"] - 300) <= 2) == ("down", True)
    assert point["magnitude_pct"] == pytest.approx(-20, abs=3)


def test_noise_gives_an_empty_list(tmp_path):
    result = run("--input", write(tmp_path / "s.csv", series(factor=1.0)))
    assert (result.returncode, result.stdout.strip()) == (0, "[]")


def test_the_period_comes_from_the_time_column(tmp_path):
    rng = random.Random(2)
    day = 288  # 5-minute rows over 7 days
    values = [100 * (1 + 0.35 * math.sin(2 * math.pi * i / day)) * rng.lognormvariate(0, 0.08)
              for i in range(7 * day)]
    path = write(tmp_path / "cycle.csv", values)
    assert json.loads(run("--input", path).stdout) == []
    assert json.loads(run("--input", path, "--period", str(day)).stdout) == []
    assert len(json.loads(run("--input", path, "--period", "0").stdout)) >= 1


def test_the_options_change_what_is_found(tmp_path):
    path = write(tmp_path / "s.csv", series(factor=1.04, seed=3))
    assert json.loads(run("--input", path).stdout) == []
    found = json.loads(run("--input", path, "--min-magnitude-pct", "2", "--threshold", "3").stdout)
    assert [p["direction"] for p in found] == ["up"]


def test_help_documents_the_options():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--input", "--period", "--min-magnitude-pct", "--threshold", "--max-rows"):
        assert option in result.stdout


GOOD = "time,value\n" + "".join(f"{1700000000 + 60 * i},{100 + i % 3}\n" for i in range(20))


@pytest.mark.parametrize(("content", "args", "message"), [
    (None, (), "cannot read"),
    ("", (), "is empty"),
    ("timestamp,value\n1,2\n", (), "line 1: the header must be time,value"),
    ("value,time\n1,2\n", (), "the header must be time,value"),
    ("time,value\n", (), "no data rows"),
    ("time,value\n1,2\n2,3\n3,4\n", (), "3 data rows; at least 12"),
    (GOOD.replace(",101\n", ",abc\n", 1), (), "line 3: value 'abc' is not a number"),
    (GOOD.replace(",102\n", ",\n", 1), (), "line 4: value '' is not a number"),
    (GOOD.replace(",101\n", ",nan\n", 1), (), "line 3: value 'nan' is not a finite number"),
    (GOOD.replace("1700000060,", "yesterday,", 1), (), "line 3: time 'yesterday'"),
    (GOOD.replace("1700000060,", "1600000000,", 1), (), "line 3: time '1600000000' is before"),
    (GOOD.replace(",101\n", ",101,7\n", 1), (), "line 3: expected 2 fields"),
    (GOOD, ("--max-rows", "10"), "more than 10 data rows"),
    (GOOD, ("--period", "daily"), "--period"),
    (GOOD, ("--min-segment", "50", "--max-window", "20"), "--min-segment must not exceed"),
    (GOOD, ("--max-rows", "20000000"), "--max-rows is at most"),
])
def test_bad_input_gets_a_clear_message_and_exit_2(tmp_path, content, args, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    result = run("--input", str(path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"time,value\n1,\xff\xfe\n")
    result = run("--input", str(path))
    assert (result.returncode, "not UTF-8" in result.stderr) == (2, True)


def test_a_directory_is_refused(tmp_path):
    result = run("--input", str(tmp_path))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_the_good_file_itself_is_accepted(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(GOOD)
    result = run("--input", str(path))
    assert (result.returncode, result.stdout.strip()) == (0, "[]")
