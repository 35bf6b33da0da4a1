"""``python -m bench tuning``: the tuning loop, proven live.

For each recommendation rule (bench/tuning_scenarios.py): a real node and
its jobs process, with the analysis intervals and windows shortened by
configuration (bench/tuning_rig.py: JOB_INTERVALS, ADVICE_WINDOW_S,
IMPACT_WINDOW_S); load that puts the node into the rule's condition; the
jobs process started after a full impact window of load, the
recommendation awaited in the control log and applied at once with
``POST /api/v1/recommendations/<id>/apply``, the load kept, and the impact
job's verdict awaited. ``seconds_to_issue`` counts from the jobs' start (the
first advice run comes ~11 s after it). Applied at once because a rule that
stops firing for one run has its recommendation dismissed as expired (this
happened to burst-down when the apply waited a window). The figure the
rule promised to move is read over the impact window before and after the
apply, per slice (mean and standard deviation): ``effect_shown`` when it
moved the promised way by more than twice its standard error and 5 %.

Then a deliberately bad change applied by hand (``PUT /api/v1/config``,
``batch_timeout_ms`` at its maximum) under load, which the impact job must
roll back within two impact windows.

Options: ``--only RULE[,RULE]`` runs those scenarios; ``--no-bad-change``;
``--serial`` runs one scenario at a time (two at once by default; those in
``ALONE`` always by themselves, at the end).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import timedelta
from typing import Any

import gevent

from bench.tuning_rig import (
    ADVICE_WINDOW_S,
    IMPACT_WINDOW_S,
    Rig,
    now,
    parse_at,
    seconds,
    wait_until,
)
from bench.tuning_scenarios import BAD_CHANGE, Scenario, bad_change_load, by_rule
from service.domain.advice import RULES

ISSUE_TIMEOUT_S = 150.0
WINDOW = timedelta(seconds=IMPACT_WINDOW_S)


def progress(text: str) -> None:
    print(f"[tuning {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def shown(before: dict, after: dict, better: int) -> bool:
    """Moved the promised way by more than twice its standard error and 5 %."""
    if before["mean"] is None or after["mean"] is None:
        return False
    delta = (after["mean"] - before["mean"]) * better
    se = math.sqrt(sum((w["sd"] or 0.0) ** 2 / max(1, w["n"]) for w in (before, after)))
    return delta > 2 * se and delta > 0.05 * abs(before["mean"])


def run_scenario(scenario: Scenario) -> dict[str, Any]:
    result: dict[str, Any] = {"rule": scenario.rule, "figure": scenario.figure,
                              "issued": False}
    env = {**scenario.env, **(scenario.prepare() if scenario.prepare else {})}
    with Rig(scenario.rule, env) as rig:
        drive = scenario.start(rig.url)
        try:
            # a whole window of load before the jobs start, so the change is
            # applied as soon as it is issued and "before" is all under load
            wait_until(now() + WINDOW + timedelta(seconds=2))
            rig.start_jobs()
            started = now()
            rec = rig.wait_issued(scenario.rule, ISSUE_TIMEOUT_S)
            if rec is None:
                result["why_not"] = f"not issued within {ISSUE_TIMEOUT_S:.0f} s of the jobs"
                result["open"] = [r["id"] for r in rig.recommendations()]
                # what the rules read over the last advice window, to say why
                end = now()
                seen = rig.reader.health_inputs(end - timedelta(seconds=ADVICE_WINDOW_S), end)
                result["seen"] = {k: round(v, 4) for k, v in seen.items() if v is not None}
                progress(f"{scenario.rule}: {result['why_not']}")
                return result
            issued_at = parse_at(rec["issued_at"])
            result.update(issued=True, id=rec["id"], evidence=rec.get("evidence"),
                          seconds_to_issue=seconds(issued_at - started),
                          expected_effect=rec.get("expected_effect"))
            progress(f"{scenario.rule}: issued {rec['id']} {result['seconds_to_issue']} s "
                     "after the jobs started; applying it")
            applied = rig.apply(rec["id"])
            at = parse_at(applied["at"])
            impact, rollback = rig.wait_impact(applied["seq"], IMPACT_WINDOW_S + 60)
            windows = {name: rig.figures(start, start + WINDOW, scenario.measure,
                                         scenario.slices)
                       for name, start in (("before", at - WINDOW), ("after", at))}
            result.update(windows)
            result["effect_shown"] = shown(windows["before"], windows["after"], scenario.better)
            # whole-window means (a CPU figure needs two 10 s process samples)
            result["extra"] = {name: {side: rig.figures(start, start + WINDOW, f, 1)["mean"]
                                      for side, start in (("before", at - WINDOW),
                                                          ("after", at))}
                               for name, f in scenario.extra.items()}
            result["verdict"] = impact["payload"]["verdict"] if impact else None
            result["signs"] = impact["payload"]["signs"] if impact else None
            result["rolled_back"] = rollback is not None
        finally:
            result["load_status"] = drive.stop()
    progress(f"{scenario.rule}: {scenario.figure} {result.get('before', {}).get('mean')} -> "
             f"{result.get('after', {}).get('mean')}, effect_shown={result.get('effect_shown')}, "
             f"verdict={result.get('verdict')}")
    return result


def run_bad_change() -> dict[str, Any]:
    out: dict[str, Any] = {"bad_change": BAD_CHANGE, "bad_change_rolled_back": False}
    with Rig("bad-change", {}) as rig:
        rig.start_jobs()
        drive = bad_change_load(rig.url)
        try:
            wait_until(now() + WINDOW + timedelta(seconds=5))
            change = rig.change(BAD_CHANGE, "bench tuning: a deliberately bad change")
            at = parse_at(change["at"])
            progress(f"bad change #{change['seq']} applied; waiting for the impact job")
            impact, rollback = rig.wait_impact(change["seq"], 2 * IMPACT_WINDOW_S + 30)
            p99 = {name: rig.figures(start, start + WINDOW, lambda f: f.get("delivery_p99_ms"), 6)
                   for name, start in (("before", at - WINDOW), ("after", at))}
            out.update(bad_change_p99_ms=p99,
                       bad_change_verdict=impact["payload"]["verdict"] if impact else None,
                       bad_change_signs=impact["payload"]["signs"] if impact else None,
                       bad_change_rolled_back=rollback is not None)
            if rollback is not None:
                taken = seconds(parse_at(rollback["at"]) - at)
                out.update(bad_change_seconds_to_rollback=taken,
                           bad_change_within_two_windows=taken <= 2 * IMPACT_WINDOW_S)
        finally:
            out["bad_change_load_status"] = drive.stop()
    progress(f"bad change: verdict {out.get('bad_change_verdict')}, rolled back "
             f"{out['bad_change_rolled_back']} after {out.get('bad_change_seconds_to_rollback')} s")
    return out


# Two scenarios run at once, each on its own node: the rules that read the
# CPU (level-down and compression-down: less than 0.25 / 0.6 of a core) share
# lane 1 with the bad change, so no two of them overlap. batch-timeout-up
# runs alone at the end: its load (0.27-0.31 of a core) put the node behind
# (p99 of 5 s) beside another scenario.
LANE_1 = ("level-down", "compression-down", "burst-down")
ALONE = ("batch-timeout-up",)


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench tuning")
    parser.add_argument("--only", default="", help="rules to run, comma-separated")
    parser.add_argument("--no-bad-change", action="store_true")
    parser.add_argument("--serial", action="store_true", help="one scenario at a time")
    args = parser.parse_args(argv)
    known = by_rule()
    chosen = [known[r] for r in args.only.split(",") if r] if args.only else list(known.values())
    started = time.monotonic()
    shared = [s for s in chosen if s.rule not in ALONE]
    lanes: list[list[Any]] = [[s for s in shared if s.rule in LANE_1 or args.serial],
                              [s for s in shared if s.rule not in LANE_1 and not args.serial]]
    if not args.no_bad_change:
        lanes[0].append("bad-change")
    alone = [s for s in chosen if s.rule in ALONE]
    results: dict[str, Any] = {}
    begun = iter(range(1, 1000))

    def lane(items: list[Any]) -> None:
        for item in items:
            name = item if isinstance(item, str) else item.rule
            progress(f"scenario {next(begun)}/{sum(map(len, lanes)) + len(alone)}: {name}")
            results[name] = run_bad_change() if name == "bad-change" else run_scenario(item)

    gevent.joinall([gevent.spawn(lane, items) for items in lanes if items], raise_error=True)
    lane(alone)
    scenarios = [results[s.rule] for s in chosen]
    result: dict[str, Any] = {"scenarios": scenarios, **results.get("bad-change", {})}
    applied = [s for s in scenarios if s["issued"]]
    result.update(
        rules_without_scenario=sorted(set(RULES) - set(known)),
        all_issued=all(s["issued"] for s in scenarios),
        effect_shown_share=(round(sum(bool(s.get("effect_shown")) for s in applied)
                                  / len(applied), 2) if applied else None),
        windows={"advice_s": ADVICE_WINDOW_S, "impact_s": IMPACT_WINDOW_S},
        wall_s=round(time.monotonic() - started, 1),
        targets={"all_issued": True, "effect_shown_share": ">= 0.8",
                 "bad_change_within_two_windows": True})
    return result
