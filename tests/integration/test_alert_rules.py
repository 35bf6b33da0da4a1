"""The provisioned alert rules (provisioning/alerting/rules.yml) evaluated as
Grafana evaluates them, against a real InfluxDB: for each rule, data that
must fire it and data that must not.

Grafana cannot run here, so this module carries a small evaluator of what the
rules use:

- InfluxQL queries: ``$timeFilter`` becomes ``time >= <from>ms and time <=
  <to>ms`` from the query's ``relativeTimeRange`` (seconds before now), as
  Grafana's InfluxDB datasource renders it; each series of the answer is one
  item, its tags its labels. No series at all is "no data". The rules read
  ``"raw"."<measurement>"``; the test database has the ``raw`` policy, the
  default, as the service makes it (``InfluxClient.ensure_database``), and
  points are written to it.
- ``reduce`` (last, mean, min, max, sum, count; modes strict, dropNN,
  replaceNN): one number per series.
- ``math``: ``+ - * /``, comparisons, ``&&`` and ``||`` over ``$REF`` numbers,
  joined on labels as Grafana joins them (labels of one a subset of the
  other's; a lone item on each side always joins).
- ``threshold`` (gt, lt, within_range, outside_range).
- The condition: each item non-zero is Alerting, zero is Normal; an empty
  condition is no data, turned into the rule's ``noDataState``.

``for`` (the pending period) is not simulated: each test is one evaluation.
A NaN reaching a condition fails the test: what Grafana would make of it is
exactly the ambiguity the rules are written to avoid.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from service.adapters.influx_analysis_writer import write_regressions
from service.adapters.influx_writer import InfluxWriter
from service.adapters.line_protocol import encode
from service.domain.levels import LEVELS
from service.service_layer import analysis
from service.service_layer.live_config import LiveConfig
from service.service_layer.telemetry import TelemetryRing
from service.service_layer.trend_job import trend_limits
from tests.support.fakes import InMemoryControlLog

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "provisioning" / "alerting" / "rules.yml"
EXPR = "__expr__"
NO_DATA_STATES = {"Alerting": "Alerting", "NoData": "NoData", "OK": "Normal"}
S = 1_000_000_000  # ns per second

influx_test = pytest.mark.influx


# --------------------------------------------------------------------------
# The evaluator


Labels = frozenset  # of (name, value) pairs


@dataclass(frozen=True)
class Item:
    """One series (``values`` in time order) or, after a reduce, one number."""

    labels: Labels
    values: tuple[float | None, ...]

    @property
    def number(self) -> float:
        assert len(self.values) == 1, f"not a number: {self}"
        return self.values[0]


@dataclass(frozen=True)
class Outcome:
    state: str  # Alerting when any instance fires, NoData, or Normal
    instances: dict[Labels, str]  # per label set: Alerting | Normal

    @property
    def firing(self) -> set[Labels]:
        return {labels for labels, state in self.instances.items() if state == "Alerting"}


def labels(**pairs: str) -> Labels:
    return frozenset(pairs.items())


def fill_time_filter(query: str, relative: dict[str, int], now_ms: int) -> str:
    start = now_ms - int(relative["from"]) * 1000
    end = now_ms - int(relative["to"]) * 1000
    return query.replace("$timeFilter", f"time >= {start}ms and time <= {end}ms")


def run_query(influx, step: dict, now_ms: int) -> list[Item]:
    query = fill_time_filter(step["model"]["query"], step["relativeTimeRange"], now_ms)
    results = influx.query(query, epoch="ms")
    items = []
    for result in results:
        for series in result.get("series", []):
            columns = series["columns"]
            assert columns[0] == "time" and len(columns) == 2, (
                f"{step['refId']}: one value column per series, or Grafana makes several "
                f"frames with the same labels: {columns}")
            values = tuple(None if row[1] is None else float(row[1]) for row in series["values"])
            items.append(Item(frozenset((series.get("tags") or {}).items()), values))
    return items


def reduce_values(values: tuple[float | None, ...], reducer: str, settings: dict) -> float:
    mode = (settings or {}).get("mode", "")
    numbers: list[float] = []
    for value in values:
        if value is None or math.isnan(value):
            if mode == "dropNN":
                continue
            if mode == "replaceNN":
                numbers.append(float(settings["replaceWithValue"]))
                continue
            numbers.append(math.nan)  # strict: NaN poisons the result below
        else:
            numbers.append(value)
    if reducer == "count":
        return float(len(numbers))
    if reducer == "last":  # only the last value counts, NaN or not
        return numbers[-1] if numbers else math.nan
    if reducer == "sum":
        return float(sum(numbers))  # NaN if any is
    if not numbers or any(math.isnan(v) for v in numbers):
        return math.nan
    return {"mean": lambda v: sum(v) / len(v), "min": min, "max": max}[reducer](numbers)


def reduce_items(items: list[Item], reducer: str, settings: dict) -> list[Item]:
    return [Item(item.labels, (reduce_values(item.values, reducer, settings),))
            for item in items]


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: lambda a, b: a / b if b else math.copysign(math.inf, a) if a else math.nan}
_COMPARE = {ast.Lt: operator.lt, ast.Gt: operator.gt, ast.LtE: operator.le,
            ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}


def _math_value(node: ast.AST, env: dict[str, float]) -> float:
    if isinstance(node, ast.Expression):
        return _math_value(node.body, env)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_math_value(node.operand, env)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_math_value(node.left, env), _math_value(node.right, env))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        left, right = _math_value(node.left, env), _math_value(node.comparators[0], env)
        return 1.0 if _COMPARE[type(node.ops[0])](left, right) else 0.0
    if isinstance(node, ast.BoolOp):
        values = [_math_value(v, env) != 0 for v in node.values]
        return 1.0 if (all(values) if isinstance(node.op, ast.And) else any(values)) else 0.0
    raise ValueError(f"math: {ast.dump(node)} is not supported by this evaluator")


def math_items(expression: str, results: dict[str, list[Item]]) -> list[Item]:
    refs = list(dict.fromkeys(re.findall(r"\$\{?([A-Za-z]\w*)\}?", expression)))
    python = re.sub(r"\$\{?([A-Za-z]\w*)\}?", r"\1", expression)
    python = python.replace("&&", " and ").replace("||", " or ")
    tree = ast.parse(python, mode="eval")
    combos: list[tuple[Labels, dict[str, float]]] = [(frozenset(), {})]
    for ref in refs:
        items = results[ref]
        joined = []
        for combo_labels, env in combos:
            for item in items:
                lone = len(combos) == 1 and len(items) == 1
                if lone or combo_labels <= item.labels or item.labels <= combo_labels:
                    joined.append((combo_labels | item.labels, {**env, ref: item.number}))
        combos = joined
    return [Item(combo_labels, (_math_value(tree, env),)) for combo_labels, env in combos]


def threshold_items(items: list[Item], evaluator: dict) -> list[Item]:
    kind, params = evaluator["type"], [float(p) for p in evaluator["params"]]
    test = {
        "gt": lambda v: v > params[0],
        "lt": lambda v: v < params[0],
        "within_range": lambda v: params[0] < v < params[1],
        "outside_range": lambda v: v < params[0] or v > params[1],
    }[kind]
    out = []
    for item in items:
        value = item.number
        assert not math.isnan(value), f"NaN reaches the threshold: {item}"
        out.append(Item(item.labels, (1.0 if test(value) else 0.0,)))
    return out


def evaluate(rule: dict, influx, now_s: float | None = None) -> Outcome:
    now_ms = int((time.time() if now_s is None else now_s) * 1000)
    results: dict[str, list[Item]] = {}
    for step in rule["data"]:
        model = step["model"]
        if step["datasourceUid"] != EXPR:
            results[step["refId"]] = run_query(influx, step, now_ms)
        elif model["type"] == "reduce":
            results[step["refId"]] = reduce_items(results[model["expression"]],
                                                  model["reducer"], model.get("settings"))
        elif model["type"] == "math":
            results[step["refId"]] = math_items(model["expression"], results)
        elif model["type"] == "threshold":
            [condition] = model["conditions"]
            results[step["refId"]] = threshold_items(results[model["expression"]],
                                                     condition["evaluator"])
        else:
            raise ValueError(f"expression type {model['type']!r} is not supported here")
    condition = results[rule["condition"]]
    if not condition:
        return Outcome(NO_DATA_STATES[rule["noDataState"]], {})
    instances = {}
    for item in condition:
        assert not math.isnan(item.number), f"NaN condition: {item}"
        instances[item.labels] = "Alerting" if item.number != 0 else "Normal"
    assert len(instances) == len(condition), f"two results with the same labels: {condition}"
    state = "Alerting" if "Alerting" in instances.values() else "Normal"
    return Outcome(state, instances)


def load_rules() -> dict[str, dict]:
    document = yaml.safe_load(RULES_FILE.read_text())
    return {rule["title"]: rule for group in document["groups"] for rule in group["rules"]}


def rule(title: str) -> dict:
    return load_rules()[title]


# --------------------------------------------------------------------------
# The evaluator on its own: it must be able to tell firing from not.


def series(values, **tags):
    return Item(frozenset(tags.items()), tuple(values))


@pytest.mark.parametrize(("reducer", "mode", "expected"), [
    ("last", "dropNN", 3.0), ("mean", "dropNN", 2.0), ("min", "dropNN", 1.0),
    ("max", "dropNN", 3.0), ("sum", "dropNN", 6.0), ("count", "dropNN", 3.0),
    ("last", "", 3.0), ("sum", "", math.nan), ("max", "", math.nan),
    ("sum", "replaceNN", 16.0), ("mean", "replaceNN", 4.0),
])
def test_reducers(reducer, mode, expected):
    settings = {"mode": mode, "replaceWithValue": 10}
    got = reduce_values((1.0, None, 2.0, 3.0), reducer, settings)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_reducers_of_nothing():
    assert math.isnan(reduce_values((), "last", {"mode": "dropNN"}))
    assert reduce_values((), "count", {}) == 0
    assert reduce_values((None,), "sum", {"mode": "dropNN"}) == 0


@pytest.mark.parametrize(("kind", "params", "value", "fires"), [
    ("gt", [5], 5.0, False), ("gt", [5], 5.1, True), ("lt", [1], 0.5, True),
    ("lt", [1], 1.0, False), ("within_range", [1, 3], 2.0, True),
    ("within_range", [1, 3], 3.0, False), ("outside_range", [1, 3], 4.0, True),
])
def test_thresholds(kind, params, value, fires):
    [item] = threshold_items([series([value])], {"type": kind, "params": params})
    assert item.number == (1.0 if fires else 0.0)


def test_threshold_refuses_nan():
    with pytest.raises(AssertionError, match="NaN"):
        threshold_items([series([math.nan])], {"type": "gt", "params": [0]})


def test_math_joins_on_labels_and_a_labelless_number_joins_everything():
    results = {"C": [series([90.0], node="a"), series([10.0], node="b")],
               "D": [series([100.0])]}
    got = {item.labels: item.number for item in math_items("$C / $D", results)}
    assert got == {labels(node="a"): 0.9, labels(node="b"): 0.1}


def test_math_does_not_join_disjoint_labels():
    results = {"C": [series([1.0], node="a"), series([1.0], node="b")],
               "D": [series([1.0], node="c"), series([2.0], node="a")]}
    got = {item.labels: item.number for item in math_items("$C + $D", results)}
    assert got == {labels(node="a"): 3.0}


def test_math_logic():
    results = {"C": [series([0.5])], "D": [series([99.0])]}
    assert math_items("$C < 0.7 && $D >= 100", results)[0].number == 0.0
    results["D"] = [series([100.0])]
    assert math_items("$C < 0.7 && $D >= 100", results)[0].number == 1.0
    assert math_items("$C > 0.7 || $D >= 100", results)[0].number == 1.0


def test_math_with_no_data_is_no_data():
    assert math_items("$C / $D", {"C": [series([1.0], node="a")], "D": []}) == []


def test_time_filter_is_grafanas():
    got = fill_time_filter('SELECT 1 FROM "x" WHERE $timeFilter', {"from": 300, "to": 60},
                           1_000_000)
    assert got == 'SELECT 1 FROM "x" WHERE time >= 700000ms and time <= 940000ms'


# --------------------------------------------------------------------------
# Seeding


def point(measurement, tags, fields, ago_s, node="a", role="serve", now=None):
    stamp = int(((now or time.time()) - ago_s) * S)
    return encode(measurement, tags, fields, stamp, {"node": node, "role": role})


def write(influx, lines):
    influx.write_lines(lines)


def every(seconds_from, seconds_to, step):
    """Ages (seconds ago) from ``seconds_from`` down to ``seconds_to``, every ``step``."""
    return range(seconds_from, seconds_to - 1, -step)


# --------------------------------------------------------------------------
# Each rule: firing, not firing, and with no data


def targets_point(level: str, ago: float, now: float | None = None) -> str:
    """``analysis_targets`` as the health job writes it for ``level``: the
    same ``trend_limits`` of that level's values (emit_targets)."""
    values = LEVELS[level]
    limits = trend_limits({"max_connections": values.max_connections,
                           "memory_budget_mb": values.memory_budget_mb,
                           "batch_timeout_ms": values.batch_timeout_ms}, 256 << 20)
    return point("analysis_targets", {},
                 {"level": level, "delivery_p99_ms": limits["delivery_p99_ms"],
                  "connections": limits["connections"], "rss_bytes": limits["rss_bytes"]},
                 ago, node="jobs", role="jobs", now=now)


def target_ms(level: str) -> float:
    return trend_limits({"max_connections": 1, "memory_budget_mb": 1,
                         "batch_timeout_ms": LEVELS[level].batch_timeout_ms}, 0)["delivery_p99_ms"]


def live_p99(node: str, p99_ms: float, now: float, mode: str = "live") -> list[str]:
    return [point("notify_delivery", {"mode": mode}, {"count": 10, "latency_ms_p99": p99_ms},
                  ago, node=node, now=now) for ago in every(290, 5, 5)]


@influx_test
def test_p99_fires_per_node_above_the_live_target_and_only_for_live(influx):
    now = time.time()
    assert target_ms("balanced") == 120.0
    write(influx, [
        targets_point("balanced", 30, now=now),
        *live_p99("a", 100.0, now), *live_p99("b", 180.0, now),
        # replays wait for their user: not delivery latency
        *live_p99("a", 9000.0, now, mode="replay"),
        # an old slow spell, outside the 5-minute window
        point("notify_delivery", {"mode": "live"}, {"count": 10, "latency_ms_p99": 9000.0},
              900, node="a", now=now),
    ])
    outcome = evaluate(rule("NotifyDeliveryP99High"), influx)
    assert outcome.instances == {labels(node="a"): "Normal", labels(node="b"): "Alerting"}


@influx_test
@pytest.mark.parametrize("level", ["conservative", "aggressive"])
def test_p99_is_held_to_the_target_of_the_level_live_now(influx, level):
    """The same p99 is fine at one level and too slow at another: 150 ms is
    over conservative's 70 ms and under aggressive's 220 ms."""
    now = time.time()
    write(influx, [targets_point(level, 20, now=now),
                   *live_p99("a", 0.9 * target_ms(level), now),
                   *live_p99("b", 1.1 * target_ms(level), now),
                   *live_p99("c", 150.0, now)])
    outcome = evaluate(rule("NotifyDeliveryP99High"), influx)
    assert outcome.instances[labels(node="a")] == "Normal"
    assert outcome.instances[labels(node="b")] == "Alerting"
    assert outcome.instances[labels(node="c")] == (
        "Alerting" if target_ms(level) < 150 else "Normal")


@influx_test
def test_p99_is_judged_against_the_newest_target(influx):
    now = time.time()
    # aggressive until the memory mitigation set conservative, two minutes ago
    write(influx, [targets_point("aggressive", ago, now=now) for ago in every(1800, 180, 60)]
          + [targets_point("conservative", ago, now=now) for ago in every(120, 0, 60)]
          + live_p99("a", 100.0, now))
    assert evaluate(rule("NotifyDeliveryP99High"), influx).firing == {labels(node="a")}


@influx_test
def test_p99_of_a_quiet_node_under_the_target_does_not_fire(influx):
    now = time.time()
    # 119 ms: low priority waits 2 x 50 ms + 20 ms by design at level balanced
    write(influx, [targets_point("balanced", 10, now=now)]
          + [point("notify_delivery", {"mode": "live"}, {"count": 1, "latency_ms_p99": 119.0},
                   ago, now=now) for ago in every(250, 10, 10)])
    assert evaluate(rule("NotifyDeliveryP99High"), influx).state == "Normal"


@influx_test
def test_p99_without_a_target_is_not_judged(influx):
    now = time.time()
    # the jobs process has not run the health job yet
    write(influx, live_p99("a", 5000.0, now))
    outcome = evaluate(rule("NotifyDeliveryP99High"), influx)
    assert outcome.state == "Normal" and outcome.instances == {}


@influx_test
def test_p99_with_no_deliveries_is_ok(influx):
    write(influx, [targets_point("balanced", 10)])
    outcome = evaluate(rule("NotifyDeliveryP99High"), influx)
    assert outcome.state == "Normal" and outcome.instances == {}


def drops(node: str, reason: str, total: int, now: float, span: int = 280) -> list[str]:
    """``total`` drops spread over the last ``span`` seconds, as per-second summaries."""
    ages = list(every(span, 5, 5))
    share, extra = divmod(total, len(ages))
    return [point("notify_drop", {"reason": reason}, {"count": share + (i < extra)}, ago,
                  node=node, now=now) for i, ago in enumerate(ages) if share + (i < extra)]


@influx_test
def test_drops_fire_on_a_sustained_rate_per_node_and_reason(influx):
    now = time.time()
    write(influx, [
        *drops("a", "slow_consumer", 30, now),   # 0.1 per second
        *drops("b", "handoff_error", 5, now),    # one client now and then: 0.017 per second
        *drops("c", "handoff_error", 20, now),   # 0.067 per second
        point("notify_drop", {"reason": "slow_consumer"}, {"count": 900}, 400, node="b", now=now),
    ])
    outcome = evaluate(rule("NotifyDeliveryDrops"), influx)
    assert outcome.instances == {labels(node="a", reason="slow_consumer"): "Alerting",
                                 labels(node="b", reason="handoff_error"): "Normal",
                                 labels(node="c", reason="handoff_error"): "Alerting"}


@influx_test
def test_disconnects_never_page(influx):
    now = time.time()
    # thousands of clients leaving with a batch waiting: routine, replayed on reconnect
    write(influx, drops("a", "disconnected", 3000, now))
    outcome = evaluate(rule("NotifyDeliveryDrops"), influx)
    assert outcome.state == "Normal" and outcome.instances == {}


@influx_test
def test_no_drops_is_ok(influx):
    write(influx, [point("notify_drop", {"reason": "handoff_error"}, {"count": 9}, 900)])
    outcome = evaluate(rule("NotifyDeliveryDrops"), influx)
    assert outcome.state == "Normal" and outcome.instances == {}


def books(node: str, unaccounted: int, ago: float, now: float, published: int = 1000) -> str:
    """A ``notify_books`` sample whose figures add up to ``unaccounted``."""
    pending = 5
    live = published - 40 - 10 - 5 - pending - unaccounted
    return point("notify_books", {},
                 {"published": published, "live": live, "queued": 40, "deferred": 10,
                  "dropped": 5, "pending": pending, "unaccounted": unaccounted},
                 ago, node=node, now=now)


@influx_test
def test_books_unbalanced_fires_per_node_either_way(influx):
    now = time.time()
    write(influx, [
        *[books("a", 0, ago, now) for ago in every(110, 5, 10)],
        *[books("b", 3, ago, now) for ago in every(110, 5, 10)],     # 3 entries lost
        *[books("c", -2, ago, now) for ago in every(110, 5, 10)],    # 2 counted twice
        # was off, then restarted: its books start again at 0
        *[books("d", 4, ago, now) for ago in every(110, 60, 10)],
        *[books("d", 0, ago, now, published=10) for ago in every(50, 5, 10)],
    ])
    outcome = evaluate(rule("NotifyBooksUnbalanced"), influx)
    assert outcome.instances == {labels(node="a"): "Normal", labels(node="b"): "Alerting",
                                 labels(node="c"): "Alerting", labels(node="d"): "Normal"}


@influx_test
def test_balanced_books_do_not_fire(influx):
    now = time.time()
    write(influx, [books(node, 0, ago, now, published=1000 + ago)
                   for node in ("a", "b") for ago in every(110, 5, 10)])
    outcome = evaluate(rule("NotifyBooksUnbalanced"), influx)
    assert outcome.state == "Normal" and len(outcome.instances) == 2


@influx_test
def test_books_of_no_node_is_ok(influx):
    # an old imbalance, before the window: a node that stopped is NotifyNodeSilent's
    write(influx, [books("a", 7, 600, time.time())])
    outcome = evaluate(rule("NotifyBooksUnbalanced"), influx)
    assert outcome.state == "Normal" and outcome.instances == {}


def cache_points(hits, misses, ago=60, now=None):
    return [point("cache", {"level": "user", "cache": "streams"},
                  {"hits": hits, "misses": misses, "entries": 10, "bytes": 100}, ago, now=now)]


@influx_test
@pytest.mark.parametrize(("hits", "misses", "state"), [
    (50, 150, "Alerting"),  # 25 % of 200 lookups
    (69, 31, "Alerting"),   # 69 % of exactly 100
    (70, 30, "Normal"),     # 70 % is not below 70 %
    (950, 50, "Normal"),
    (5, 45, "Normal"),      # 10 %, but of only 50 lookups
    (0, 0, "Normal"),
])
def test_cache_hit_rate(influx, hits, misses, state):
    write(influx, cache_points(hits, misses))
    assert evaluate(rule("NotifyCacheHitRateLow"), influx).state == state


@influx_test
def test_cache_hit_rate_adds_up_caches_and_forgets_old_misses(influx):
    now = time.time()
    write(influx, [
        point("cache", {"level": "user", "cache": "streams"}, {"hits": 40, "misses": 40}, 60,
              now=now),
        point("cache", {"level": "global", "cache": "log"}, {"hits": 60, "misses": 0}, 60,
              node="b", now=now),
        point("cache", {"level": "user", "cache": "streams"}, {"hits": 0, "misses": 5000}, 900,
              now=now),
    ])
    # (40 + 60) / 140 = 0.71 over the last 5 minutes
    assert evaluate(rule("NotifyCacheHitRateLow"), influx).state == "Normal"


@influx_test
def test_cache_with_no_lookups_reported_is_ok(influx):
    assert evaluate(rule("NotifyCacheHitRateLow"), influx).state == "Normal"


MIB = 1 << 20


def budget_point(limit_bytes, ago, now=None):
    return point("analysis_targets", {},
                 {"level": "custom", "delivery_p99_ms": 70.0, "connections": 15_000.0,
                  "rss_bytes": float(limit_bytes)}, ago, node="jobs", role="jobs", now=now)


def rss_points(node, rss, role="serve", now=None):
    return [point("process", {}, {"rss_bytes": int(rss), "uptime_s": 100.0}, ago, node=node,
                  role=role, now=now) for ago in every(110, 10, 10)]


@influx_test
def test_memory_fires_above_90_percent_of_the_budget_per_serving_node(influx):
    now = time.time()
    write(influx, [budget_point(512 * MIB, 200, now=now),
                   *rss_points("a", 0.95 * 512 * MIB, now=now),
                   *rss_points("b", 0.89 * 512 * MIB, now=now),
                   # the jobs process has no memory budget: b's does not count
                   *rss_points("b", 5 * 512 * MIB, role="jobs", now=now)])
    outcome = evaluate(rule("NotifyMemoryCritical"), influx)
    assert outcome.instances == {labels(node="a"): "Alerting", labels(node="b"): "Normal"}


@influx_test
def test_memory_is_judged_against_the_newest_budget(influx):
    now = time.time()
    # the level went from balanced (512 MiB) to aggressive (1 GiB) an hour ago
    write(influx, [budget_point(512 * MIB, 4000, now=now), budget_point(1024 * MIB, 300, now=now),
                   *rss_points("a", 0.95 * 512 * MIB, now=now)])
    assert evaluate(rule("NotifyMemoryCritical"), influx).state == "Normal"


@influx_test
def test_memory_reads_the_budget_the_health_job_writes(influx):
    """The budget is no seeded guess: the real health job, at the live
    level, writes the budget the rule divides by, and a level change moves it."""
    ring = TelemetryRing()
    writer = InfluxWriter(ring, influx, {"node": "jobs-1", "role": "jobs"})
    config = LiveConfig("balanced", {}, lambda values: None, ring, log=InMemoryControlLog())
    analysis.run_health(NoFigures(), ring, config, 1 << 30)
    writer.close()
    now = time.time()
    budget = LEVELS["balanced"].memory_budget_mb * MIB
    write(influx, [*rss_points("a", 0.93 * budget, now=now),
                   *rss_points("b", 0.85 * budget, now=now)])
    outcome = evaluate(rule("NotifyMemoryCritical"), influx)
    assert outcome.instances == {labels(node="a"): "Alerting", labels(node="b"): "Normal"}

    writer = InfluxWriter(ring, influx, {"node": "jobs-1", "role": "jobs"})
    config.change({"level": "aggressive"}, actor="alice")  # twice the budget
    analysis.run_health(NoFigures(), ring, config, 1 << 30)
    writer.close()
    outcome = evaluate(rule("NotifyMemoryCritical"), influx)
    assert outcome.instances == {labels(node="a"): "Normal", labels(node="b"): "Normal"}


class NoFigures:
    """What the health job reads when nothing has been measured yet."""

    def health_inputs(self, start, end):
        return {}


@influx_test
def test_memory_without_a_known_budget_is_not_judged(influx):
    write(influx, rss_points("a", 4096 * MIB))
    outcome = evaluate(rule("NotifyMemoryCritical"), influx)
    assert outcome.state == "Normal" and outcome.instances == {}


def telemetry_points(node, values, field="dropped", role="serve", now=None, step=60):
    """One point per ``step`` seconds, the last 5 s ago."""
    count = len(values)
    return [point("telemetry_self", {}, {"emitted": 100, "written": 100, "spooled": 0,
                                         "dropped": 0, "queued": 0, "spool_bytes": 0,
                                         "write_ms": 1.0, field: value},
                  5 + (count - 1 - i) * step, node=node, role=role, now=now)
            for i, value in enumerate(values)]


@influx_test
def test_telemetry_dropping_fires_on_an_increase_not_on_a_restart(influx):
    now = time.time()
    write(influx, [
        *telemetry_points("a", [0, 0, 0, 5, 5, 5], now=now),   # dropped 5 just now
        *telemetry_points("b", [7, 7, 7, 7, 7, 7], now=now),   # dropped long ago
        *telemetry_points("c", [9, 9, 0, 0, 0, 0], now=now),   # restarted: not a drop
        *telemetry_points("d", [9, 9, 0, 3, 3, 3], now=now),   # restarted, then dropped 3
        *telemetry_points("a", [0, 2, 2, 2, 2, 2], role="jobs", now=now),
    ])
    outcome = evaluate(rule("NotifyTelemetryDropping"), influx)
    assert outcome.firing == {labels(node="a", role="serve"), labels(node="a", role="jobs"),
                              labels(node="d", role="serve")}
    assert outcome.instances[labels(node="b", role="serve")] == "Normal"
    assert outcome.instances[labels(node="c", role="serve")] == "Normal"


@influx_test
def test_telemetry_dropping_with_no_reports_is_ok(influx):
    assert evaluate(rule("NotifyTelemetryDropping"), influx).state == "Normal"


@influx_test
def test_spool_growing_fires_and_a_draining_spool_does_not(influx):
    now = time.time()
    write(influx, [
        *telemetry_points("a", [0, 4096, 9000, 20000], field="spool_bytes", now=now, step=60),
        *telemetry_points("b", [50000, 20000, 0, 0], field="spool_bytes", now=now, step=60),
        *telemetry_points("c", [0, 0, 0, 0], field="spool_bytes", now=now, step=60),
        # grew a long time ago, then stayed: not growing now
        *telemetry_points("d", [0, 8000, 8000, 8000, 8000, 8000, 8000, 8000, 8000],
                          field="spool_bytes", now=now, step=60),
    ])
    outcome = evaluate(rule("NotifyTelemetrySpoolGrowing"), influx)
    assert outcome.firing == {labels(node="a", role="serve")}
    assert len(outcome.instances) == 4


def regression(metric, direction, ago):
    """A row as the regressions job finds it, stamped at the new regime's start."""
    return {"at": datetime.now(UTC) - timedelta(seconds=ago), "metric": metric,
            "direction": direction, "before_mean": 10.0, "after_mean": 20.0,
            "magnitude_pct": 100.0, "text": f"{metric} {direction}"}


@influx_test
def test_regression_fires_for_a_harmful_shift_of_the_last_day(influx):
    write_regressions(influx, [
        regression("delivery_p99_ms", "up", 7200),
        regression("cache_hit_rate", "down", 600),
        regression("cache_hit_rate", "up", 600),     # better, not a regression
        regression("rss_bytes", "down", 600),        # better
        regression("delivery_rate", "down", 600),    # the load, not the service
        regression("db_query_ms", "up", 2 * 86400),  # began two days ago
    ])
    outcome = evaluate(rule("NotifyRegressionDetected"), influx)
    assert outcome.instances == {
        labels(metric="delivery_p99_ms", direction="up"): "Alerting",
        labels(metric="cache_hit_rate", direction="down"): "Alerting",
    }


@influx_test
def test_no_regression_is_ok(influx):
    write_regressions(influx, [regression("drop_rate", "down", 600)])
    outcome = evaluate(rule("NotifyRegressionDetected"), influx)
    assert outcome.state == "Normal" and outcome.instances == {}


def samples(node, role, newest_ago, oldest_ago=1200, now=None):
    return [point("process", {}, {"rss_bytes": 100, "uptime_s": float(ago)}, ago, node=node,
                  role=role, now=now) for ago in every(oldest_ago, newest_ago, 10)]


@influx_test
def test_a_node_that_stopped_sampling_fires(influx):
    now = time.time()
    write(influx, [
        *samples("a", "serve", newest_ago=2, now=now),
        *samples("a", "jobs", newest_ago=4, now=now),
        *samples("b", "serve", newest_ago=240, now=now),     # silent for 4 minutes
        *samples("c", "serve", newest_ago=7300, oldest_ago=8000, now=now),  # gone long ago
    ])
    outcome = evaluate(rule("NotifyNodeSilent"), influx)
    assert outcome.instances == {labels(node="a", role="serve"): "Normal",
                                 labels(node="a", role="jobs"): "Normal",
                                 labels(node="b", role="serve"): "Alerting"}


@influx_test
def test_a_node_that_just_started_is_not_silent(influx):
    now = time.time()
    # started 70 s ago: one full minute of samples at most behind the current one
    write(influx, samples("a", "serve", newest_ago=1, oldest_ago=70, now=now))
    assert evaluate(rule("NotifyNodeSilent"), influx).state == "Normal"


@influx_test
def test_the_first_seconds_of_a_minute_are_not_silence(influx):
    # evaluated 1 s into a minute, the last sample 3 s before: the current
    # minute has none yet, the one before has all six
    now = time.time() // 60 * 60 + 1
    write(influx, samples("a", "serve", newest_ago=3, oldest_ago=600, now=now))
    assert evaluate(rule("NotifyNodeSilent"), influx, now_s=now).state == "Normal"


@influx_test
def test_no_node_at_all_is_alerting(influx):
    outcome = evaluate(rule("NotifyNodeSilent"), influx)
    assert outcome.state == "Alerting" and outcome.instances == {}


def health_point(component, level, ago, now=None):
    status = ("healthy", "warning", "critical")[level]
    return point("analysis_health", {"component": component, "status": status},
                 {"level": level, "reason": f"{component} {status}"}, ago, node="jobs-1",
                 role="jobs", now=now)


@influx_test
def test_component_critical_fires_on_the_newest_verdict(influx):
    now = time.time()
    write(influx, [
        health_point("delivery", 1, 200, now=now),
        health_point("delivery", 2, 60, now=now),
        health_point("cache", 2, 200, now=now),     # was critical...
        health_point("cache", 0, 60, now=now),      # ...and recovered
        health_point("storage", 1, 60, now=now),    # warning is not critical
        health_point("scheduler", 2, 900, now=now),  # too old
    ])
    outcome = evaluate(rule("NotifyComponentCritical"), influx)
    assert outcome.instances == {labels(component="delivery"): "Alerting",
                                 labels(component="cache"): "Normal",
                                 labels(component="storage"): "Normal"}


@influx_test
def test_component_critical_with_no_verdict_is_no_data(influx):
    assert evaluate(rule("NotifyComponentCritical"), influx).state == "NoData"


def cluster_points(node, redis_up, newest_ago=2, oldest_ago=300, now=None):
    """A node's presence reports every 5 s; ``redis_up(ago)`` says 1 or 0."""
    return [point("cluster", {}, {"connections": 3, "users": 2, "redis_up": redis_up(ago),
                                  "relay_sent": 0, "relay_unsent": 0, "relay_received": 0},
                  ago, node=node, now=now)
            for ago in every(oldest_ago, newest_ago, 5)]


@influx_test
def test_redis_down_fires_for_a_node_whose_reports_said_down_for_a_minute(influx):
    now = time.time()
    write(influx, [
        *cluster_points("a", lambda ago: 1, now=now),
        *cluster_points("b", lambda ago: 0 if ago < 90 else 1, now=now),  # down 90 s
        *cluster_points("c", lambda ago: 0 if ago < 40 else 1, now=now),  # down 40 s: not yet
        *cluster_points("d", lambda ago: 1 if ago < 30 else 0, now=now),  # back 30 s ago
        # one failed report among good ones is not an outage
        *cluster_points("e", lambda ago: 0 if ago == 22 else 1, now=now),
        # started with Redis away: down for 90 s fires, for 40 s not yet
        *cluster_points("f", lambda ago: 0, oldest_ago=90, now=now),
        *cluster_points("g", lambda ago: 0, oldest_ago=40, now=now),
    ])
    outcome = evaluate(rule("NotifyRedisDown"), influx)
    assert outcome.instances == {labels(node="a"): "Normal", labels(node="b"): "Alerting",
                                 labels(node="c"): "Normal", labels(node="d"): "Normal",
                                 labels(node="e"): "Normal", labels(node="f"): "Alerting"}


@influx_test
def test_redis_down_on_a_single_node_without_redis_is_ok(influx):
    # a node without REDIS_URL writes no cluster points, only its other telemetry
    write(influx, samples("a", "serve", newest_ago=2, oldest_ago=300))
    outcome = evaluate(rule("NotifyRedisDown"), influx)
    assert outcome.state == "Normal" and outcome.instances == {}


@influx_test
def test_redis_down_forgets_an_outage_older_than_a_minute(influx):
    now = time.time()
    # a node that stopped reporting (its outage is NotifyNodeSilent's, not this rule's)
    write(influx, cluster_points("a", lambda ago: 0, newest_ago=120, now=now))
    outcome = evaluate(rule("NotifyRedisDown"), influx)
    assert outcome.state == "Normal" and outcome.instances == {}


def test_every_rule_has_a_behaviour_test_here():
    tested = {
        "NotifyDeliveryP99High", "NotifyDeliveryDrops", "NotifyCacheHitRateLow",
        "NotifyMemoryCritical", "NotifyTelemetryDropping", "NotifyTelemetrySpoolGrowing",
        "NotifyRegressionDetected", "NotifyNodeSilent", "NotifyComponentCritical",
        "NotifyRedisDown", "NotifyBooksUnbalanced",
    }
    assert set(load_rules()) == tested
