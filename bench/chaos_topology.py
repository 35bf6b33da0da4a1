"""Where the chaos run's nodes listen and how they reach the services, and
how each fault of the schedule is injected there and healed.

With network namespaces (bench/chaos_net.py), node i runs in its own one and
serves at its node address; it reaches PostgreSQL, Redis and InfluxDB only
through a FaultProxy per (node, service) on its host-side address, and a
partition cuts its veth silently. Without them (or ``--no-netns``), nodes
serve on loopback; PostgreSQL and Redis are reached through a FaultProxy per
(node, service), and clients and publishers through one per node, and a
partition blackholes all three."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import gevent

from bench import chaos_faults as kinds
from bench.chaos_faults import Fault
from bench.chaos_net import FaultProxy, NodeNetwork
from bench.chaos_services import Influx, Node, Postgres, Redis, free_port

MAX_INDEX = 200  # NodeNetwork's indices: 198.18.<index>.0/24


class Topology:
    def __init__(self, run_id: str, nodes: int, netns: bool) -> None:
        self.run_id, self.count, self.netns = run_id, nodes, netns
        self.networks: list[NodeNetwork] = []
        self.proxies: dict[tuple[int, str], FaultProxy] = {}
        self.ports = [free_port() for _ in range(nodes)]

    def build(self, pg: Postgres, redis: Redis, influx: Influx) -> None:
        services = {"pg": pg.port, "redis": redis.port}
        if self.netns:
            services["influx"] = influx.port
            index = 0
            for _ in range(self.count):
                while True:
                    index += 1
                    if index > MAX_INDEX:
                        raise RuntimeError("no free 198.18.<n>.0/24 for a node network")
                    network = NodeNetwork(self.run_id, index)
                    with contextlib.suppress(RuntimeError):
                        network.create()
                        break
                self.networks.append(network)
        for i in range(self.count):
            host = self.networks[i].host_ip if self.netns else "127.0.0.1"
            for name, port in services.items():
                self._proxy(i, name, host, ("127.0.0.1", port))
            if not self.netns:
                self._proxy(i, "clients", "127.0.0.1", ("127.0.0.1", self.ports[i]))

    def _proxy(self, i: int, name: str, host: str, target: tuple[str, int]) -> None:
        proxy = FaultProxy(f"node{i}-{name}", listen=(host, 0), target=target)
        proxy.start()
        self.proxies[(i, name)] = proxy

    def _at(self, i: int, name: str) -> str:
        host, port = self.proxies[(i, name)].address
        return f"{host}:{port}"

    def node_env(self, i: int, influx: Influx) -> dict[str, str]:
        influx_url = f"http://{self._at(i, 'influx')}" if self.netns else influx.url
        return {"HOST": self.networks[i].node_ip if self.netns else "127.0.0.1",
                "PORT": str(self.ports[i]),
                "DATABASE_URL": f"postgresql+psycopg2://postgres@{self._at(i, 'pg')}/chaos",
                "REDIS_URL": f"redis://{self._at(i, 'redis')}/0", "INFLUX_URL": influx_url}

    def prefix(self, i: int) -> list[str]:
        return self.networks[i].command([]) if self.netns else []

    def node_url(self, i: int) -> str:
        """Where the run itself asks a node for its health."""
        if self.netns:
            return f"http://{self.networks[i].node_ip}:{self.ports[i]}"
        return f"http://127.0.0.1:{self.ports[i]}"

    def client_url(self, i: int) -> str:
        """Where clients and publishers reach node i."""
        return self.node_url(i) if self.netns else f"http://{self._at(i, 'clients')}"

    def link(self, i: int, target: str) -> FaultProxy:
        return self.proxies[(i, target)]

    def partition(self, i: int) -> None:
        if self.netns:
            self.networks[i].partition()
        else:
            for name in ("pg", "redis", "clients"):
                self.proxies[(i, name)].set("blackhole")

    def heal(self, i: int) -> None:
        if self.netns:
            self.networks[i].heal()
        else:
            for name in ("pg", "redis", "clients"):
                self.proxies[(i, name)].set("pass")

    def heal_all(self) -> None:
        for i in range(self.count):
            with contextlib.suppress(Exception):
                self.heal(i)
        for proxy in self.proxies.values():
            proxy.set("pass")

    def counters(self) -> dict:
        return {f"{i}-{name}": p.counters() for (i, name), p in self.proxies.items()}

    def destroy(self) -> None:
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                proxy.stop()
        for network in self.networks:
            network.destroy()
        self.networks, self.proxies = [], {}


class FaultRunner:
    """Injects each fault at its time (after ``t0``), heals it after its
    duration, and logs both on stderr and in ``faults.jsonl``."""

    def __init__(self, faults: list[Fault], nodes: list[Node], pg: Postgres, redis: Redis,
                 influx: Influx, topology: Topology, out: Path) -> None:
        self.faults, self.nodes, self.topology = faults, nodes, topology
        self.pg, self.redis, self.influx = pg, redis, influx
        self.file = open(out, "a", buffering=1, encoding="utf-8")
        self.injected: Counter[str] = Counter()
        self.failed: list[str] = []
        self.active: set[gevent.Greenlet] = set()
        self.down: set[int] = set()  # nodes this runner has taken down
        self.t0 = 0.0

    def run(self, t0: float) -> None:
        """Every fault of the schedule in turn; returns once all have healed."""
        self.t0 = t0
        for fault in self.faults:
            gevent.sleep(max(0.0, t0 + fault.at - time.monotonic()))
            greenlet = gevent.spawn(self.apply, fault)
            self.active.add(greenlet)
            greenlet.link(self.active.discard)
        gevent.joinall(list(self.active))

    def _log(self, event: str, fault: Fault, **extra: object) -> None:
        elapsed = time.monotonic() - self.t0
        note = f" ({extra['error']})" if "error" in extra else ""
        print(f"chaos: [{elapsed:6.1f} s] {event:6} {fault.describe()}{note}",
              file=sys.stderr, flush=True)
        self.file.write(json.dumps({"type": "fault", "event": event, "t": round(time.time(), 3),
                                    "elapsed": round(elapsed, 2), **fault.to_dict(),
                                    **extra}) + "\n")

    def apply(self, fault: Fault) -> None:
        if fault.kind in kinds.NODE_DOWN:  # at most one node down: wait for the others
            others = [n for n in self.nodes if n.index != fault.node]
            waited = time.monotonic()
            while (self.down or not all(n.healthy() for n in others)) \
                    and time.monotonic() - waited < 30:
                gevent.sleep(0.5)
        try:
            self._inject(fault)
        except Exception as exc:
            self.failed.append(f"{fault.describe()}: {exc!r}")
            self._log("FAILED", fault, error=repr(exc)[:300])
        finally:
            if fault.kind in kinds.NODE_DOWN:
                self.down.discard(fault.node)

    def _inject(self, fault: Fault) -> None:
        kind, node = fault.kind, (self.nodes[fault.node] if fault.node is not None else None)
        self.injected[kind] += 1
        self._log("inject", fault)
        if kind == kinds.KILL9:
            self.down.add(node.index)
            node.kill9()
            gevent.sleep(fault.duration)
            self._restart(node, fault)
        elif kind == kinds.SIGTERM:
            self.down.add(node.index)
            code = node.sigterm(timeout=30.0)
            self._log("exited", fault, code=code)
            self._restart(node, fault)
        elif kind == kinds.PG_RESTART:
            self.pg.restart()
        elif kind == kinds.PG_PAUSE:
            self.pg.pause(fault.duration)
        elif kind == kinds.REDIS_RESTART:
            self.redis.restart()
        elif kind == kinds.INFLUX_STOP:
            self.influx.stop()
            gevent.sleep(fault.duration)
            self.influx.start()
        elif kind == kinds.PARTITION:
            self.down.add(node.index)
            try:
                self.topology.partition(node.index)
                gevent.sleep(fault.duration)
            finally:
                self.topology.heal(node.index)
        else:
            proxy = self.topology.link(node.index, fault.target)
            try:
                proxy.set(kind, delay_ms=fault.delay_ms, bytes_per_s=fault.bytes_per_s)
                gevent.sleep(fault.duration)
            finally:
                proxy.set("pass")
        self._log("healed", fault)

    def _restart(self, node: Node, fault: Fault) -> None:
        node.start()
        if not node.wait_healthy(90):
            raise RuntimeError(f"node {node.index} not healthy 90 s after its restart:\n"
                               + node.log_tail())

    def stop(self) -> None:
        """Stop injecting (a fault under way is cut short; heal_all follows)."""
        for greenlet in list(self.active):
            greenlet.kill(block=True, timeout=30)
        self.pg.resume()
        if not self.file.closed:
            self.file.close()
