"""The chaos run's fault schedule: a pure function of the seed.

``schedule(seed, minutes, nodes)`` draws, with ``random.Random(seed)`` alone,
one fault every 10-20 s: which kind, on which node or link, for how long. The
same seed gives the same list anywhere, so a failed run replays. Every fault
heals itself before the run ends, at most one node is down (killed, stopped
or partitioned) at a time, and no two faults hold one resource at once (a
service, or one node's link to a service), so each heal undoes exactly one
fault. The kinds are drawn from a shuffled bag, so a 5-minute run sees each
kind at least once."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

# the kinds, in the order the issue lists them
KILL9 = "kill9"  # kill -9 a node, start it again after 1-5 s
SIGTERM = "sigterm"  # SIGTERM a node, start it again once it exited
PG_RESTART = "pg_restart"
PG_PAUSE = "pg_pause"  # SIGSTOP the postmaster and its children for 1-10 s
REDIS_RESTART = "redis_restart"
INFLUX_STOP = "influx_stop"  # InfluxDB down for 5-20 s
PARTITION = "partition"  # a node cut off from everything (its clients too) 2-10 s
BLACKHOLE = "blackhole"  # node <-> PostgreSQL or Redis: bytes accepted, never answered
RESET = "reset"  # node <-> PostgreSQL or Redis: connections reset
DELAY = "delay"  # node <-> PostgreSQL or Redis: 50-500 ms each way, 5-20 s
THROTTLE = "throttle"  # node <-> PostgreSQL or Redis: 20-200 KB/s, 5-20 s
KINDS = (KILL9, SIGTERM, PG_RESTART, PG_PAUSE, REDIS_RESTART, INFLUX_STOP, PARTITION,
         BLACKHOLE, RESET, DELAY, THROTTLE)
NODE_DOWN = (KILL9, SIGTERM, PARTITION)  # the node is out of the cluster meanwhile
LINK = (BLACKHOLE, RESET, DELAY, THROTTLE)  # through a node's proxy to a service
LINK_TARGETS = ("pg", "redis")

# how long each kind lasts (seconds), drawn uniformly
DURATION = {KILL9: (1.0, 5.0), SIGTERM: (0.0, 0.0), PG_RESTART: (0.0, 0.0),
            PG_PAUSE: (1.0, 10.0), REDIS_RESTART: (0.0, 0.0), INFLUX_STOP: (5.0, 20.0),
            PARTITION: (2.0, 10.0), BLACKHOLE: (2.0, 10.0), RESET: (2.0, 10.0),
            DELAY: (5.0, 20.0), THROTTLE: (5.0, 20.0)}
# time a fault may hold its resource past its duration: a node's restart until
# healthy, a graceful stop's drain, a database's start
SLACK = {KILL9: 15.0, SIGTERM: 25.0, PG_RESTART: 10.0, REDIS_RESTART: 5.0,
         INFLUX_STOP: 5.0, PARTITION: 5.0, PG_PAUSE: 3.0}
GAP = (10.0, 20.0)  # between one fault's start and the next
FIRST = (4.0, 8.0)  # the first fault, after the run starts publishing
TAIL = 3.0  # every fault has healed this long before the end


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after publishing started
    kind: str
    duration: float = 0.0  # seconds until it heals (0: heals at once, e.g. a restart)
    node: int | None = None  # the node it hits (node kinds and link kinds)
    target: str | None = None  # the link's far end: "pg" or "redis" (link kinds)
    delay_ms: int = 0  # DELAY
    bytes_per_s: int = 0  # THROTTLE

    @property
    def ends(self) -> float:
        return self.at + self.duration

    def resource(self) -> str:
        """What the fault holds: two faults never hold one resource at once."""
        if self.kind in (PG_RESTART, PG_PAUSE):
            return "pg"
        if self.kind == REDIS_RESTART:
            return "redis"
        if self.kind == INFLUX_STOP:
            return "influx"
        if self.kind in LINK:
            return f"node{self.node}-{self.target}"
        return f"node{self.node}"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items()
                if v is not None and (v or k not in ("duration", "delay_ms", "bytes_per_s"))}

    def describe(self) -> str:
        where = "" if self.node is None else f" node {self.node}"
        where += f"<->{self.target}" if self.target else ""
        extra = f" {self.delay_ms} ms" if self.delay_ms else ""
        extra += f" {self.bytes_per_s // 1000} KB/s" if self.bytes_per_s else ""
        lasting = f" for {self.duration:.1f} s" if self.duration else ""
        return f"{self.kind}{where}{extra}{lasting}"


def schedule(seed: int, minutes: float, nodes: int) -> list[Fault]:
    """The faults of a run of ``minutes`` on ``nodes`` nodes, in time order."""
    if nodes < 1:
        raise ValueError("nodes must be at least 1")
    rng = random.Random(seed)
    total = minutes * 60.0
    busy: dict[str, float] = {}  # resource -> until when it is held
    faults: list[Fault] = []
    bag: list[str] = []
    at = rng.uniform(*FIRST)
    while at < total - TAIL:
        if not bag:
            bag = list(KINDS)
            rng.shuffle(bag)
        fault = _draw(rng, at, total, nodes, busy, bag)
        if fault is not None:
            faults.append(fault)
            busy[fault.resource()] = fault.ends + SLACK.get(fault.kind, 0.0)
            if fault.kind in NODE_DOWN:
                busy["node-down"] = busy[fault.resource()]
        at += rng.uniform(*GAP)
    return faults


def _draw(rng: random.Random, at: float, total: float, nodes: int,
          busy: dict[str, float], bag: list[str]) -> Fault | None:
    """The first kind in the bag that fits at ``at`` (taken out of the bag),
    or None when none fits in this slot."""
    for index, kind in enumerate(bag):
        low, high = DURATION[kind]
        room = total - TAIL - at - SLACK.get(kind, 0.0)
        if room < low:
            continue
        duration = round(min(rng.uniform(low, high), room), 2)
        if kind in NODE_DOWN and busy.get("node-down", 0.0) > at:
            continue
        node = rng.randrange(nodes) if kind in NODE_DOWN or kind in LINK else None
        target = rng.choice(LINK_TARGETS) if kind in LINK else None
        fault = Fault(at=round(at, 2), kind=kind, duration=duration, node=node, target=target,
                      delay_ms=rng.randint(50, 500) if kind == DELAY else 0,
                      bytes_per_s=rng.randint(20, 200) * 1000 if kind == THROTTLE else 0)
        if busy.get(fault.resource(), 0.0) > at or _node_held(fault, busy, at):
            continue
        del bag[index]
        return fault
    return None


def _node_held(fault: Fault, busy: dict[str, float], at: float) -> bool:
    """A node fault waits for that node's link faults and the other way round."""
    if fault.node is None:
        return False
    prefix = f"node{fault.node}"
    return any(until > at for name, until in busy.items()
               if (name == prefix or name.startswith(prefix + "-"))
               and name != fault.resource())
