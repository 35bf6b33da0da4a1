"""SIGTERM while a publish waits on a database that does not answer: the
publish outlives the node's grace period and is answered 503
``node_stopping`` (retry elsewhere with the same Idempotency-Key), never a
bare 500. The database is reached through the chaos run's fault proxy,
blackholed. The proxy runs in a process of its own (start_server sleeps
without yielding to gevent); the request uses gevent's sockets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import gevent
from gevent import socket
from sqlalchemy.engine import make_url

from tests.support.repository import ROOT
from tests.support.server_process import start_server

# a FaultProxy to HOST:PORT: prints its port, then takes a mode per stdin line
PROXY = """
import sys, gevent
from gevent.fileobject import FileObjectThread
from bench.chaos_proxy import FaultProxy
proxy = FaultProxy("pg", ("127.0.0.1", 0), (sys.argv[1], int(sys.argv[2])))
proxy.start()
print(proxy.address[1], flush=True)
for line in FileObjectThread(sys.stdin):
    proxy.set(line.strip())
"""


def raw_publish(url: str, token: str, body: dict, key: str) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    raw = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)), timeout=60)
    try:
        sock.sendall(b"POST /api/v1/notifications HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     + f"Authorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n".encode()
                     + b"Content-Type: application/json\r\n"
                     + f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_a_publish_the_node_cannot_finish_before_it_stops_is_a_503_not_a_500(
        pg_url, influx_database, tmp_path):
    url = make_url(pg_url)
    proxy = subprocess.Popen([sys.executable, "-c", PROXY, url.host, str(url.port)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    server = None
    try:
        proxied = url.set(host="127.0.0.1", port=int(proxy.stdout.readline()))
        server = start_server({"DATABASE_URL": proxied.render_as_string(hide_password=False),
                               "INFLUX_DB": influx_database}, tmp_path)
        token = server.env["PUBLISH_TOKEN"]
        body = {"user_id": "sam", "category": "c"}
        first = gevent.spawn(raw_publish, server.url, token, body, "before")
        assert first.get(timeout=20)[0] == 202
        proxy.stdin.write("blackhole\n")  # the database stops answering: the next commit waits
        proxy.stdin.flush()
        waiting = gevent.spawn(raw_publish, server.url, token, body, "stuck")
        gevent.sleep(1.0)
        assert not waiting.ready()
        server.process.send_signal(signal.SIGTERM)
        status, answer = waiting.get(timeout=30)
        assert (status, answer["error"]) == (503, "node_stopping"), answer
        assert "Idempotency-Key" in answer["detail"]
        while server.process.poll() is None:
            gevent.sleep(0.1)
        assert "Traceback" not in server.log_text()
    finally:
        if server is not None and server.process.poll() is None:
            server.process.kill()
        proxy.kill()
        proxy.wait()
