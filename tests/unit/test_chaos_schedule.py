"""bench/chaos_faults.py: the chaos run's fault schedule is a pure function
of its seed, and every schedule is one the run can carry out and heal."""

from __future__ import annotations

import pytest

from bench.chaos_faults import DURATION, KINDS, LINK, NODE_DOWN, SLACK, TAIL, schedule

SEEDS = range(60)


def test_the_same_seed_gives_the_same_schedule():
    assert schedule(7, 5, 3) == schedule(7, 5, 3)
    assert [f.to_dict() for f in schedule(123, 2, 2)] == [f.to_dict() for f in schedule(123, 2, 2)]


def test_different_seeds_give_different_schedules():
    drawn = {tuple(schedule(seed, 5, 3)) for seed in SEEDS}
    assert len(drawn) == len(SEEDS)


def test_every_kind_appears_over_five_minutes():
    for seed in SEEDS:
        assert {f.kind for f in schedule(seed, 5, 3)} == set(KINDS), seed
    assert {f.kind for seed in SEEDS for f in schedule(seed, 5, 2)} == set(KINDS)


@pytest.mark.parametrize("nodes", [1, 2, 3])
def test_faults_come_every_ten_to_twenty_seconds_and_heal_within_the_run(nodes):
    for seed in SEEDS:
        for minutes in (1, 5):
            faults = schedule(seed, minutes, nodes)
            assert faults, (seed, minutes)
            assert faults == sorted(faults, key=lambda f: f.at)
            for fault in faults:
                low, high = DURATION[fault.kind]
                assert fault.kind in KINDS
                assert low <= fault.duration <= high
                assert fault.ends + SLACK.get(fault.kind, 0.0) <= minutes * 60 - TAIL + 1e-6
                assert (fault.node is not None) == (fault.kind in NODE_DOWN + LINK)
                assert fault.node is None or 0 <= fault.node < nodes
                assert (fault.target in ("pg", "redis")) == (fault.kind in LINK)
            gaps = [b.at - a.at for a, b in zip(faults, faults[1:], strict=False)]
            assert all(gap >= 10.0 for gap in gaps), (seed, gaps)
            if minutes == 5:
                assert sum(gaps) / len(gaps) <= 22.0, (seed, gaps)


def test_a_one_minute_run_gets_at_least_three_faults():
    assert min(len(schedule(seed, 1, 2)) for seed in range(500)) >= 3


def test_at_most_one_node_is_down_at_a_time():
    for seed in SEEDS:
        down = [f for f in schedule(seed, 5, 3) if f.kind in NODE_DOWN]
        for before, after in zip(down, down[1:], strict=False):
            assert after.at >= before.ends + SLACK.get(before.kind, 0.0), (seed, before, after)


def test_no_two_faults_hold_one_resource_at_once():
    for seed in SEEDS:
        held: dict[str, float] = {}
        for fault in schedule(seed, 5, 3):
            name = fault.resource()
            assert held.get(name, 0.0) <= fault.at, (seed, fault)
            if fault.node is not None:  # a node and its links are one fault at a time
                assert all(until <= fault.at for other, until in held.items()
                           if other.split("-")[0] == f"node{fault.node}"), (seed, fault)
            held[name] = fault.ends + SLACK.get(fault.kind, 0.0)


def test_the_parameters_are_in_range():
    faults = [f for seed in SEEDS for f in schedule(seed, 5, 3)]
    delays = [f.delay_ms for f in faults if f.kind == "delay"]
    rates = [f.bytes_per_s for f in faults if f.kind == "throttle"]
    assert delays and all(50 <= d <= 500 for d in delays)
    assert rates and all(20_000 <= r <= 200_000 for r in rates)
    assert all(f.delay_ms == 0 for f in faults if f.kind != "delay")
    assert all(f.bytes_per_s == 0 for f in faults if f.kind != "throttle")
