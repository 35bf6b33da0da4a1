"""Network namespaces for the chaos run: each service node gets its own.

A node in its own namespace reaches the rest of the run only through one veth
pair, so one switch cuts it off from its socket.io clients, PostgreSQL and
Redis at once (a partition), and its links to PostgreSQL and Redis can go
through a FaultProxy on the host side address (delay, throttle, blackhole,
reset of one link). Addresses come from 198.18.0.0/15, which is reserved for
benchmark networks; the namespaces have no default route and the host does not
forward, so nothing from them leaves the machine, and a node that tries
127.0.0.1 for a service finds its own empty loopback instead of a silent
bypass of the proxies.

Every ``ip`` call needs root (CAP_NET_ADMIN); ``namespaces_available()`` says
whether this machine allows them and why not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from bench.chaos_proxy import MODES, FaultProxy

__all__ = ["MODES", "FaultProxy", "NodeNetwork", "namespaces_available", "remove_stale"]

# An address no interface has: neighbour entries pointing at it make the
# other end drop every frame (it is not for its MAC), silently, both ways.
NOWHERE_MAC = "02:00:5e:c4:a0:50"
_OWNER = re.compile(r"^(\S+) pid=(\d+) start=(\d+)$")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def _namespaces() -> list[str]:
    lines = _ip("netns", "list").stdout.splitlines()
    return [line.split()[0] for line in lines if line.strip()]


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): with the pid, it tells a
    live owner from a new process that reused a dead owner's pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name may hold spaces


def namespaces_available() -> tuple[bool, str]:
    """Tries what NodeNetwork needs (a namespace, a veth pair into it) and undoes it."""
    if shutil.which("ip") is None:
        return False, "the `ip` command (iproute2) is not installed"
    probe, link = f"chaosprobe-{os.getpid()}", f"cxp{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        return False, f"cannot create a network namespace (needs root): {exc}"
    try:
        _ip("link", "add", link, "type", "veth", "peer", "name", link + "n", "netns", probe)
        _ip("link", "del", link)
    except RuntimeError as exc:
        return False, f"cannot create a veth pair: {exc}"
    finally:
        _ip("netns", "del", probe, check=False)
    return True, ""


class NodeNetwork:
    """One namespace per node and a veth pair: host side 198.18.<index>.1/24,
    node side 198.18.<index>.2/24.

    The host side interface carries its owner's pid in its alias, so
    ``remove_stale`` can tell a killed run's leftovers from a live run's."""

    def __init__(self, run_id: str, index: int) -> None:
        if not 1 <= index <= 200:
            raise ValueError(f"index must be 1..200, not {index}")
        if not re.fullmatch(r"[a-z0-9]{1,8}", run_id):
            raise ValueError(f"run_id must be 1-8 of [a-z0-9], not {run_id!r}")
        self.run_id, self.index = run_id, index
        self.name = f"chaos-{run_id}-{index}"
        # at most 2 + 8 + 1 + 3 + 1 = 15 characters, the kernel's limit
        self.host_if, self.node_if = f"cx{run_id}-{index}h", f"cx{run_id}-{index}n"
        self.host_ip, self.node_ip = f"198.18.{index}.1", f"198.18.{index}.2"
        self.partitioned = False

    def __repr__(self) -> str:
        return f"NodeNetwork({self.name!r}, {self.host_ip} <-> {self.node_ip})"

    def create(self) -> None:
        """Refuses a subnet some interface already has: two runs on one index
        would route each other's packets."""
        for link in json.loads(_ip("-j", "-4", "addr", "show").stdout or "[]"):
            for addr in link.get("addr_info", []):
                if addr.get("local", "").startswith(f"198.18.{self.index}."):
                    raise RuntimeError(
                        f"198.18.{self.index}.0/24 is already on {link['ifname']}: another "
                        "run's network? remove_stale() clears what a killed run left")
        _ip("netns", "add", self.name)
        try:
            # the peer is born inside the namespace: no moment with both ends on the host
            _ip("link", "add", self.host_if, "type", "veth",
                "peer", "name", self.node_if, "netns", self.name)
            _ip("link", "set", "dev", self.host_if, "alias",
                f"{self.name} pid={os.getpid()} start={_start_time(os.getpid())}")
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
            _ip("-n", self.name, "addr", "add", f"{self.node_ip}/24", "dev", self.node_if)
            _ip("link", "set", "dev", self.host_if, "up")
            _ip("-n", self.name, "link", "set", "dev", self.node_if, "up")
            _ip("-n", self.name, "link", "set", "dev", "lo", "up")
        except Exception:
            self.destroy()
            raise
        # Nothing else to allow: rp_filter (0 here) passes even in strict mode,
        # since each side's route back to the other is the veth it came in on,
        # and there are no iptables/nftables rules on this machine.

    def destroy(self) -> None:
        """Idempotent. Deletes the veth first: it goes at once, while the
        namespace (and a link in it) lives on as long as a process is in it."""
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)
        self.partitioned = False

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def partition(self) -> None:
        """Cuts the node off, silently, both ways: each side's neighbour entry for
        the other now names a MAC nobody has, so frames cross the veth and are
        dropped. Connections stall and new connects time out, as on a real
        partition; the links stay up and TCP retransmits once healed.

        Not ``ip link set <host_if> down``: that removes the host's route to
        198.18.<index>.0/24, and the host then sends the node's packets (client
        SYNs, replies) out of its default route, off the machine."""
        _ip("neigh", "replace", self.node_ip, "lladdr", NOWHERE_MAC,
            "dev", self.host_if, "nud", "permanent")
        _ip("-n", self.name, "neigh", "replace", self.host_ip, "lladdr", NOWHERE_MAC,
            "dev", self.node_if, "nud", "permanent")
        self.partitioned = True

    def heal(self) -> None:
        """Drops the false neighbour entries (ARP finds the real ones again) and
        makes sure both ends are up."""
        _ip("neigh", "del", self.node_ip, "dev", self.host_if, check=False)
        _ip("-n", self.name, "neigh", "del", self.host_ip, "dev", self.node_if, check=False)
        _ip("link", "set", "dev", self.host_if, "up")
        _ip("-n", self.name, "link", "set", "dev", self.node_if, "up")
        self.partitioned = False


def remove_stale(prefix: str = "chaos-") -> list[str]:
    """Deletes namespaces (and their veth pairs) whose names start with
    ``prefix`` and whose creator is no longer running: what a killed run left
    behind. A live run's namespaces stay. Returns the names removed."""
    owners: dict[str, tuple[int, str]] = {}
    for link in json.loads(_ip("-j", "link", "show").stdout or "[]"):
        owner = _OWNER.match(link.get("ifalias", ""))
        if owner and owner[1].startswith(prefix):
            owners[owner[1]] = (int(owner[2]), owner[3])
            if _start_time(int(owner[2])) != owner[3]:
                _ip("link", "del", link["ifname"], check=False)
    removed = []
    for name in _namespaces():
        if not name.startswith(prefix):
            continue
        pid, start = owners.get(name, (0, ""))
        if pid and _start_time(pid) == start:
            continue
        _ip("netns", "del", name, check=False)
        removed.append(name)
    return removed
