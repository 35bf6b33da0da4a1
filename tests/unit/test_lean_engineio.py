"""Two shortcuts of the lean sessions, each against what it replaces: a
frame written from the caller when nothing waits (``lean_engineio``, on a
real socket whose buffer fills, so part of the frames are queued), and an
ack read without the packet decoder (``lean_socketio``, against
python-socketio's own path)."""

import socket
import time
from types import SimpleNamespace

import gevent
import gevent.socket
import pytest
from engineio import packet
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.adapters.lean_engineio import LeanEngineIOServer, LeanSocket
from service.adapters.socketio_server import make_socketio_server


@pytest.fixture
def pair():
    """A connected socket pair with small buffers, so that a few frames fill them."""
    ours, client = gevent.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    yield ours, client
    ours.close()
    client.close()


def _session(sock: gevent.socket.socket) -> LeanSocket:
    server = LeanEngineIOServer(async_mode="gevent", logger=False)
    session = LeanSocket(server, "sid1")
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


def _acks_server():
    sio = make_socketio_server(ping_interval=25, ping_timeout=8, cors_allowed_origins="*")
    calls, closed = [], []

    @sio.on("ack")
    def ack(sid, data=None, *extra):
        calls.append((sid, data, extra))

    sio.eio.disconnect = lambda eio_sid: closed.append(eio_sid)  # what a bad packet does
    sid = sio.manager.connect("eio1", "/")
    return sio, sid, calls, closed


OFFSETS = st.one_of(st.integers(0, 2**70).map(str),
                    st.text("0123456789", min_size=1, max_size=25),
                    st.text("0123456789١２ -+.eE", min_size=0, max_size=8))


@settings(max_examples=300, deadline=None)
@given(OFFSETS, st.sampled_from(['2["ack",{"offset":%s}]', '2["ack",{"offset": %s}]',
                                 '2["ack",{"offset":%s,"x":1}]', '2["ack", {"offset":%s}]']))
@example("007", '2["ack",{"offset":%s}]')
@example("12345678901234567890", '2["ack",{"offset":%s}]')
def test_an_ack_reaches_its_handler_as_python_socketio_would_give_it(offset, shape):
    message = shape % offset
    fast = _acks_server()
    fast[0]._handle_eio_message("eio1", message)  # with the shortcut
    general = _acks_server()
    general[0]._handle_decoded("eio1", message)  # python-socketio's path only
    def seen(server):  # what the handler was given, and which connections were closed
        sio, sid, calls, closed = server
        assert all(call_sid == sid for call_sid, _, _ in calls)
        return [(data, type(data.get("offset")) if isinstance(data, dict) else None, extra)
                for _, data, extra in calls], closed

    assert seen(fast) == seen(general)


def test_an_ack_that_asks_for_a_reply_takes_the_general_path():
    sio, _sid, calls, _closed = _acks_server()
    assert not sio._handled_as_ack("eio1", '21["ack",{"offset":5}]')
    assert sio._handled_as_ack("eio1", '2["ack",{"offset":5}]')
    assert not sio._handled_as_ack("eio2", '2["ack",{"offset":5}]')  # not connected to "/"
    assert len(calls) == 1


def test_a_message_while_a_binary_event_waits_for_its_attachment_is_that_attachment():
    sio, _sid, calls, _closed = _acks_server()
    # a binary ack event announced with one attachment, then a text message
    sio._handle_eio_message("eio1", '51-["ack",{"_placeholder":true,"num":0}]')
    sio._handle_eio_message("eio1", '2["ack",{"offset":5}]')
    assert calls and calls[0][1] == '2["ack",{"offset":5}]'  # the attachment, not an ack of 5
