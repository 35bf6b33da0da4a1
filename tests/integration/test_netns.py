"""NodeNetwork for real: a client process inside a namespace reaches an echo
server on the host's 127.0.0.1 only through a FaultProxy on the host side
address, as a chaos node reaches PostgreSQL and Redis.

The echo server and the proxy run in this process's gevent hub, so the client
processes are waited on with gevent.subprocess. Every namespace gets a run id
of its own and is destroyed in a finally; a machine without namespaces (not
root, no iproute2) still runs the proxy path, outside any namespace."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid

import gevent
import gevent.server
import pytest
from gevent import subprocess as gsubprocess

from bench.chaos_net import FaultProxy, NodeNetwork, namespaces_available, remove_stale

AVAILABLE, WHY_NOT = namespaces_available()

ONE_SHOT = """
import socket, sys
try:
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    sock.sendall(b"ping")
    print(sock.recv(4).decode())
except OSError as exc:
    print(type(exc).__name__)
"""

# one connection kept open: each stdin line goes through it and comes back
INTERACTIVE = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
for line in sys.stdin:
    sock.sendall(line.encode())
    print(sock.recv(100).decode(), end="", flush=True)
"""




def run_id():
    return uuid.uuid4().hex[:6]


def free_index():
    """An index no interface uses: a chaos run uses 1, 2, 3."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    used = {int(a["local"].split(".")[2]) for link in json.loads(out)
            for a in link.get("addr_info", []) if a["local"].startswith("198.18.")}
    return random.choice([i for i in range(100, 201) if i not in used])


def namespace_names():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_exists(name):
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


def one_shot(argv_prefix, address, timeout=2.0):
    done = gsubprocess.run([*argv_prefix, sys.executable, "-c", ONE_SHOT, address[0],
                            str(address[1]), str(timeout)],
                           capture_output=True, text=True, timeout=timeout + 10)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def network():
    network = NodeNetwork(run_id(), free_index())
    network.create()
    try:
        yield network
    finally:
        network.destroy()


def test_namespaces_are_available_or_the_reason_is_clear():
    assert isinstance(WHY_NOT, str)
    assert AVAILABLE or len(WHY_NOT) > 10, WHY_NOT


def test_proxy_path_without_namespaces(echo_server):
    """What a run falls back to where namespaces cannot be made: the proxy on loopback."""
    proxy = FaultProxy("echo", ("127.0.0.1", 0), ("127.0.0.1", echo_server.server_port))
    proxy.start()
    try:
        assert one_shot([], proxy.address) == "ping"
        proxy.set("blackhole")
        assert one_shot([], proxy.address, timeout=0.5) == "TimeoutError"
    finally:
        proxy.stop()


@pytest.mark.skipif(not AVAILABLE, reason=f"no network namespaces: {WHY_NOT}")
def test_a_node_reaches_the_host_only_through_the_proxy_and_partitions(network, echo_server):
    proxy = FaultProxy("echo", (network.host_ip, 0), ("127.0.0.1", echo_server.server_port))
    proxy.start()
    inside = network.command([])
    client = None
    try:
        assert proxy.address[0] == network.host_ip
        assert one_shot(inside, proxy.address) == "ping"
        # the node's 127.0.0.1 is its own: no way round the proxy
        assert one_shot(inside, ("127.0.0.1", echo_server.server_port)) == \
            "ConnectionRefusedError"

        client = gsubprocess.Popen(
            [*inside, sys.executable, "-c", INTERACTIVE, *map(str, proxy.address)],
            stdin=gsubprocess.PIPE, stdout=gsubprocess.PIPE, text=True)
        client.stdin.write("before\n")
        client.stdin.flush()
        with gevent.Timeout(5):
            assert client.stdout.readline() == "before\n"

        network.partition()
        partitioned_at = time.monotonic()
        client.stdin.write("during\n")
        client.stdin.flush()
        assert one_shot(inside, proxy.address, timeout=1.0) == "TimeoutError"
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.2):
            client.stdout.readline()  # the open connection stalls too
        assert time.monotonic() - partitioned_at >= 1.0

        network.heal()
        assert one_shot(inside, proxy.address) == "ping"
        with gevent.Timeout(10):  # the stalled bytes arrive on TCP's next retransmit
            assert client.stdout.readline() == "during\n"
        assert proxy.resets == 0
    finally:
        if client is not None:
            client.kill()
            client.wait()
        proxy.stop()

    network.destroy()
    assert network.name not in namespace_names()
    assert not link_exists(network.host_if)
    network.destroy()  # idempotent


@pytest.mark.skipif(not AVAILABLE, reason=f"no network namespaces: {WHY_NOT}")
def test_remove_stale_removes_only_what_dead_runs_left():
    base = run_id()
    live = NodeNetwork(base + "a", free_index())
    dead = lingering = None
    bare = f"chaos-{base}c-1"  # a run killed between `netns add` and the veth
    try:
        live.create()
        dead = NodeNetwork(base + "b", free_index())  # once live holds its index
        dead.create()
        exited = gsubprocess.Popen(["true"])
        exited.wait()
        subprocess.run(["ip", "link", "set", "dev", dead.host_if, "alias",
                        f"{dead.name} pid={exited.pid} start=1"], check=True)
        subprocess.run(["ip", "netns", "add", bare], check=True)
        # a leftover process keeps a namespace, and the veth in it, past `netns del`
        lingering = gsubprocess.Popen(dead.command(["sleep", "30"]))

        removed = remove_stale(f"chaos-{base}")

        assert sorted(removed) == sorted([dead.name, bare])
        assert live.name in namespace_names()
        assert not {dead.name, bare} & namespace_names()
        assert not link_exists(dead.host_if)
        assert link_exists(live.host_if)
    finally:
        if lingering is not None:
            lingering.kill()
            lingering.wait()
        live.destroy()
        if dead is not None:
            dead.destroy()
        subprocess.run(["ip", "netns", "del", bare], capture_output=True)
