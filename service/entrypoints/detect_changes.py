"""``python -m service detect-changes --input FILE.csv``: the change points of
one series, as a JSON list of ``{index, kind, direction, magnitude_pct,
confidence}`` on stdout (kind: "level", "variance" or "slope"; confidence: 1 - p-value).

The CSV has the header ``time,value``; ``time`` is ISO 8601 (no zone: UTC)
or epoch seconds, in order; ``value`` is a finite number. Blank lines are
skipped; ``index`` is the 0-based data row of the first point of the new
regime. Bad input gets one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from service.domain.changepoints import detect

DAY_S = 86_400
MAX_ROWS = 1_000_000  # two years of 1-minute rollups (its cost: docs/benchmarks.md#changepoints)
HARD_MAX_ROWS = 10_000_000
# detect()'s options the command passes on when given (else detect's defaults)
OPTIONS = ("min_magnitude_pct", "confidence", "threshold", "min_segment", "max_window")


class InputError(Exception):
    """Input the command refuses, with the message to print."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="FILE.csv",
                        help="CSV with the header time,value (time: ISO 8601 or epoch seconds)")
    parser.add_argument("--period", default="auto", type=_period, metavar="N|auto",
                        help="points per daily cycle, to divide it out (1440 for 1-minute "
                             "points); 0 for none; auto (default): from the time column if "
                             "it spans 3 days or more, else guessed from the values")
    parser.add_argument("--min-magnitude-pct", type=_non_negative, metavar="PCT",
                        help="ignore level changes smaller than this %% of the level "
                             "before (default 5)")
    parser.add_argument("--confidence", type=_fraction, metavar="C",
                        help="report a change only if the chance that no-change noise "
                             "shows one as strong is below 1 - C (default 0.9999)")
    parser.add_argument("--threshold", type=_positive, metavar="Z",
                        help="how many standard errors the jump between the straight "
                             "lines either side must be (default 4; lower finds more "
                             "changes and raises more false alarms)")
    parser.add_argument("--min-segment", type=_int_at_least(2), metavar="N",
                        help="fewest points of a new level (default 6)")
    parser.add_argument("--max-window", type=_int_at_least(2), metavar="N",
                        help="widest window either side for the jump test (default 192)")
    parser.add_argument("--max-rows", type=_int_at_least(1), default=MAX_ROWS, metavar="N",
                        help=f"refuse a file with more data rows (default {MAX_ROWS:,}; "
                             f"at most {HARD_MAX_ROWS:,})")


def run(args: argparse.Namespace) -> int:
    try:
        if args.max_rows > HARD_MAX_ROWS:
            raise InputError(f"--max-rows is at most {HARD_MAX_ROWS:,}")
        options = {name: value for name in OPTIONS
                   if (value := getattr(args, name)) is not None}
        segment, window = options.get("min_segment", 6), options.get("max_window", 192)
        if segment > window:
            raise InputError("--min-segment must not exceed --max-window")
        times, values = read_series(args.input, args.max_rows)
        if len(values) < 2 * segment:
            raise InputError(f"{args.input}: {len(values)} data rows; at least "
                             f"{2 * segment} are needed (2 x --min-segment)")
        period = args.period if args.period != "auto" else period_from_times(times)
        points = detect(values, period=period, **options)
    except InputError as exc:
        print(f"detect-changes: {exc}", file=sys.stderr)
        return 2
    print(json.dumps([{"index": p.index, "kind": p.kind, "direction": p.direction,
                       "magnitude_pct": round(p.magnitude_pct, 2)
                       if math.isfinite(p.magnitude_pct) else None,
                       "confidence": round(p.confidence, 6)} for p in points]))
    return 0


def read_series(path: str, max_rows: int) -> tuple[list[float], list[float]]:
    """(epoch seconds, values) of the CSV at ``path``, streamed row by row."""
    times: list[float] = []
    values: list[float] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path} is empty: expected the header line time,value")
            if [h.strip() for h in header] != ["time", "value"]:
                raise InputError(f"{path}, line 1: the header must be time,value, "
                                 f"not {','.join(header)[:80]!r}")
            for row in reader:
                if not row or row == [""]:
                    continue
                line = reader.line_num
                if len(row) != 2:
                    raise InputError(f"{path}, line {line}: expected 2 fields (time,value), "
                                     f"got {len(row)}")
                if len(values) == max_rows:
                    raise InputError(f"{path}: more than {max_rows:,} data rows; split the "
                                     "file or raise --max-rows")
                moment = _time(row[0].strip(), path, line)
                if times and moment < times[-1]:
                    raise InputError(f"{path}, line {line}: time {row[0].strip()!r} is before "
                                     "the row above; rows must be in time order")
                times.append(moment)
                values.append(_value(row[1].strip(), path, line))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"{path}, line {reader.line_num}: {exc}") from None
    if not values:
        raise InputError(f"{path}: no data rows after the header")
    return times, values


def period_from_times(times: list[float]) -> int | None:
    """Points per day from the median spacing, if the series spans 3 days or
    more (the detector needs 3 cycles); otherwise None: guess from the values."""
    if len(times) < 3 or times[-1] - times[0] < 3 * DAY_S:
        return None
    spacing = statistics.median(b - a for a, b in zip(times, times[1:], strict=False))
    if spacing <= 0 or DAY_S / spacing < 2:
        return None
    return round(DAY_S / spacing)


def _time(text: str, path: str, line: int) -> float:
    try:
        return float(text) if _numeric(text) else _iso(text)
    except (ValueError, OverflowError):
        raise InputError(f"{path}, line {line}: time {text[:40]!r} is neither ISO 8601 "
                         "nor epoch seconds") from None


def _iso(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _numeric(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _value(text: str, path: str, line: int) -> float:
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"{path}, line {line}: value {text[:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise InputError(f"{path}, line {line}: value {text[:40]!r} is not a finite number")
    return number


def _period(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number or auto") from None
    if number < 0 or number == 1:
        raise argparse.ArgumentTypeError("the period is 0 (none) or at least 2 points")
    return number


def _positive(text: str) -> float:
    number = _float(text)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return number


def _fraction(text: str) -> float:
    number = _float(text)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return number


def _non_negative(text: str) -> float:
    number = _float(text)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return number


def _float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return number


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {low}")
        return number
    return parse
