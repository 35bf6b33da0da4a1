"""The Engine.IO sessions patch (service/adapters/patches/engineio_sessions.py)
held to python-engineio's own: a real server of each kind, the same client
script against both, the same frames and events seen; then the deliberate
differences (a client's garbage closes its connection), and the writer's
shortcuts on a real socket whose buffer fills."""

import json
import logging
import socket
import time
from types import SimpleNamespace

import engineio
import gevent
import gevent.socket
import pytest
import websocket
from engineio import packet
from gevent import pywsgi
from geventwebsocket.handler import WebSocketHandler

from service.adapters.patches.engineio_sessions import WebSocketSession, WebSocketSessionServer

PING_INTERVAL = 0.4


def _serve(server_class: type) -> tuple[engineio.Server, pywsgi.WSGIServer, list]:
    """An Engine.IO server on loopback whose handlers echo, burst, and
    disconnect on request, recording what they saw."""
    eio = server_class(async_mode="gevent", transports=["websocket"], logger=False,
                       ping_interval=PING_INTERVAL, ping_timeout=5)
    events: list = []

    @eio.on("connect")
    def connect(sid, environ):
        events.append("connect")

    @eio.on("message")
    def message(sid, data):
        events.append(("message", data))
        if data == "burst":
            for i in range(50):
                eio.send(sid, f"m{i}" + "x" * (i * 991 % 7000))
        elif data == "bye":
            eio.disconnect(sid)
        else:
            eio.send(sid, "echo:" + data)

    @eio.on("disconnect")
    def disconnect(sid, reason):
        events.append(("disconnect", reason))

    http = pywsgi.WSGIServer(("127.0.0.1", 0), engineio.WSGIApp(eio),
                             handler_class=WebSocketHandler, log=None, error_log=None)
    http.start()
    return eio, http, events


def _run_client(server_class: type, script) -> tuple[list, list, engineio.Server]:
    """Run ``script(ws)`` in a native thread (a blocking client) against a
    server of ``server_class``; what the client received, and the server's events."""
    eio, http, events = _serve(server_class)
    url = f"ws://127.0.0.1:{http.server_port}/engine.io/?EIO=4&transport=websocket"

    def client() -> list:
        ws = websocket.create_connection(url, timeout=5)
        try:
            opened = json.loads(ws.recv()[1:])
            opened["sid"] = "-"
            return [("open", opened), *script(ws)]
        finally:
            ws.close()

    try:
        received = gevent.get_hub().threadpool.apply(client)
        gevent.sleep(0.1)  # the server's side of the close
    finally:
        http.stop(timeout=1)
    return received, events, eio


def _until_closed(ws: websocket.WebSocket) -> list:
    out = []
    while True:
        try:
            frame = ws.recv()
        except (websocket.WebSocketConnectionClosedException, OSError):
            return [*out, "closed"]
        if not frame:
            return [*out, "closed"]
        out.append(frame)


def _conversation(ws: websocket.WebSocket) -> list:
    ws.send("4hello")
    out = [ws.recv()]
    ws.send("4burst")
    out += [ws.recv() for _ in range(50)]
    started = time.monotonic()
    out.append(ws.recv())  # the ping, a ping interval on
    out.append(round(time.monotonic() - started + 0.1, 0))  # not at once, not late
    ws.send("3")
    out.append(ws.recv())  # the next one: pings go on while pongs come
    ws.send("3")
    ws.send("1")  # the client closes
    return out + _until_closed(ws)


def _server_disconnects(ws: websocket.WebSocket) -> list:
    ws.send("4bye")
    return _until_closed(ws)


@pytest.mark.parametrize("script", [_conversation, _server_disconnects])
def test_a_client_sees_what_python_engineio_would_show_it(script):
    ours = _run_client(WebSocketSessionServer, script)
    theirs = _run_client(engineio.Server, script)
    assert ours[:2] == theirs[:2]
    assert not ours[2].sockets and not theirs[2].sockets  # both sessions let go


def test_a_clients_garbage_closes_its_connection_where_python_engineio_keeps_the_session(
        caplog):
    def garbage(ws: websocket.WebSocket) -> list:
        ws.send("x-not-a-packet")
        return _until_closed(ws)

    with caplog.at_level(logging.INFO):
        received, events, eio = _run_client(WebSocketSessionServer, garbage)
    assert received[1:] == ["closed"]
    assert events == ["connect", ("disconnect", eio.reason.TRANSPORT_CLOSE)]
    assert "malformed Engine.IO packet" in caplog.text
    assert not eio.sockets
    # upstream: the decoder's ValueError ends the reader with a traceback, and
    # the session stays registered (until its ping timeout)
    _, events, eio = _run_client(engineio.Server, lambda ws: [ws.send("x-not-a-packet")])
    assert events == ["connect"] and eio.sockets


# -- the writer's shortcuts, on a real socket -------------------------------------------


@pytest.fixture
def pair():
    """A connected socket pair with small buffers, so that a few frames fill them."""
    ours, client = gevent.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    yield ours, client
    ours.close()
    client.close()


def _session(sock: gevent.socket.socket) -> WebSocketSession:
    server = WebSocketSessionServer(async_mode="gevent", logger=False)
    session = WebSocketSession(server, "sid1")
    # the attributes of gevent-websocket's WebSocket that the writer uses
    session._ws = SimpleNamespace(close=lambda: None,
                                  _sock=SimpleNamespace(closed=False,
                                                        handler=SimpleNamespace(socket=sock)))
    return session


def _read_frames(sock: gevent.socket.socket, count: int, buffer: bytes = b"") -> list[str]:
    """Server frames (unmasked, text), read until ``count`` have come."""
    messages = []
    while len(messages) < count:
        chunk = sock.recv(65536)
        assert chunk, "the writer closed the socket"
        buffer += chunk
        while len(buffer) >= 2:
            length, start = buffer[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                break
            messages.append(buffer[start:start + length].decode())
            buffer = buffer[start + length:]
    return messages


def test_frames_written_from_the_caller_and_by_the_writer_arrive_whole_and_in_order(pair):
    ours, client = pair
    session = _session(ours)
    sent = [f"{i:04d}" + "x" * (i * 397 % 20_000) for i in range(200)]
    for text in sent:
        session.send(packet.Packet(packet.MESSAGE, data=text))
    queue = session.queue
    assert queue.taken >= 1  # the first went out from the caller, with no writer
    assert queue.qsize() > 0  # the client reads nothing yet: the rest waits, in order
    reader = gevent.spawn(_read_frames, client, len(sent))
    assert reader.get(timeout=10) == ["4" + text for text in sent]
    assert queue.taken == queue.put_count  # every packet counted out as it left


def test_no_frame_is_written_while_the_writer_is_part_way_through_another(pair):
    ours, client = pair
    session = _session(ours)
    big = "b" * 300_000
    session.send(packet.Packet(packet.MESSAGE, data=big))  # the kernel takes a part
    gevent.sleep(0.05)  # the writer takes the rest, and blocks part way: nobody reads
    assert session.queue.qsize() == 0 and session._writer is not None
    first = client.recv(65536)  # room in the buffer again, before the writer wakes up
    session.send(packet.Packet(packet.MESSAGE, data="after"))
    reader = gevent.spawn(_read_frames, client, 2, first)
    assert reader.get(timeout=10) == ["4" + big, "4after"]


def test_a_send_to_a_client_past_its_pong_timeout_closes_it_as_engineio_does(pair):
    ours, client = pair
    session = _session(ours)
    session.last_ping = time.time() - 3 * session.server.ping_timeout  # never answered
    session.send(packet.Packet(packet.MESSAGE, data="late"))
    assert session.closed
    gevent.sleep(0.05)  # the writer has closed the WebSocket, and sent nothing
    assert session._ws is None
    client.settimeout(0.0)
    with pytest.raises(BlockingIOError):  # nothing came
        client.recv(100)
