"""The Socket.IO messages patch (service/adapters/patches/socketio_messages.py)
held to python-socketio's own server: the same client messages through
``socketio.Server`` and through ours reach the same handlers with the same
arguments and send the same packets; the deliberate differences (a client's
garbage closes its connection with one log line, where upstream raises) are
tested apart, as is the line between the client's fault and ours."""

import logging
import re

import pytest
import socketio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.adapters.patches import (
    ENGINEIO_SESSIONS,
    SOCKETIO_MESSAGES,
    PatchesInForce,
    check,
)
from service.adapters.patches.engineio_sessions import WebSocketSessionServer
from service.adapters.patches.socketio_messages import (
    MALFORMED,
    CheckedMessagesServer,
    SessionsServer,
    socketio_server_class,
)
from service.adapters.socketio_server import make_socketio_server


class _Seen:
    """What a server's handlers were given, what it sent and whom it closed."""

    def __init__(self) -> None:
        self.calls: list = []
        self.sent: list = []
        self.closed: list = []

    def normalised(self) -> tuple:
        sids: dict[str, str] = {}

        def name(text: str) -> str:  # random sids, named in order of appearance
            return re.sub(r"[A-Za-z0-9_-]{20}", lambda m: sids.setdefault(
                m.group(), f"sid{len(sids)}"), text)

        return (name(repr(self.calls)), name(repr(self.sent)), self.closed)


def _server(server_class: type) -> tuple[socketio.Server, _Seen]:
    sio = server_class(async_mode="gevent", async_handlers=False, logger=False,
                       engineio_logger=False)
    seen = _Seen()
    sio.eio.disconnect = lambda eio_sid: seen.closed.append(eio_sid)
    sio.eio.send = lambda eio_sid, data: seen.sent.append((eio_sid, data))
    sio.environ["eio1"] = sio.environ["eio2"] = {}

    @sio.on("connect")
    def connect(sid, environ, auth=None):
        seen.calls.append(("connect", sid, auth))

    @sio.on("ack")
    def ack(sid, data=None, *extra):
        seen.calls.append(("ack", sid, data, type(data.get("offset"))
                           if isinstance(data, dict) else None, extra))

    @sio.on("hello")
    def hello(sid, *args):
        seen.calls.append(("hello", sid, args))
        return "hi", len(args)

    @sio.on("disconnect")
    def disconnect(sid, reason):
        seen.calls.append(("disconnect", sid, reason))

    sio.manager.connect("eio1", "/")
    return sio, seen


def _through(server_class: type, messages: list) -> tuple:
    sio, seen = _server(server_class)
    for eio_sid, data in messages:
        sio._handle_eio_message(eio_sid, data)
    return seen.normalised()


WELL_FORMED = [
    [("eio1", '2["hello"]')],
    [("eio1", '2["hello",1,{"a":[2,3]},"x"]')],
    [("eio1", '27["hello","with an ack id"]')],  # the handler's answer goes back
    [("eio1", '2["ack",{"offset":12}]'), ("eio1", '2["ack",{"offset":3,"x":1}]')],
    [("eio1", '2["unknown-event",1]')],
    [("eio1", '51-["hello",{"_placeholder":true,"num":0}]'), ("eio1", b"\x00\x01binary")],
    [("eio1", '3/,5["late"]')],  # an ack of a callback nobody waits for
    [("eio2", '0{"token":"t"}')],  # a connect
    [("eio1", "1")],  # a disconnect
]


@pytest.mark.parametrize("messages", WELL_FORMED)
def test_well_formed_messages_are_handled_as_python_socketio_handles_them(messages):
    assert _through(SessionsServer, messages) == _through(socketio.Server, messages)


MALFORMED_MESSAGES = [
    '2["ack",{"offset":}]',  # not JSON
    "9",  # no such packet type
    '4{"message":"no"}',  # CONNECT_ERROR: the server's to send
    "x",
    "2" + "[" * 5000 + "]" * 5000,  # JSON nested too deep for the parser
    "2" + "1" * 101 + '["hello"]',  # an ack id too long
    "51-" + '["hello",{"_placeholder":true,"num":0}]',  # binary, not connected (eio2 below)
]


@pytest.mark.parametrize("data", MALFORMED_MESSAGES)
def test_a_clients_garbage_closes_its_connection_where_python_socketio_raises(data, caplog):
    eio_sid = "eio2" if data.startswith("51-") else "eio1"
    upstream, _ = _server(socketio.Server)
    with pytest.raises(MALFORMED):
        upstream._handle_eio_message(eio_sid, data)
    sio, seen = _server(SessionsServer)
    with caplog.at_level(logging.INFO):
        sio._handle_eio_message(eio_sid, data)  # no exception: the client's fault
    assert seen.closed == [eio_sid] and not seen.calls
    assert "malformed Socket.IO packet" in caplog.text


def test_an_attachment_that_does_not_fit_its_placeholder_is_the_clients_fault():
    sio, seen = _server(SessionsServer)
    sio._handle_eio_message("eio1", '51-["hello",{"_placeholder":true,"num":7}]')
    sio._handle_eio_message("eio1", b"bytes")
    assert seen.closed == ["eio1"] and not seen.calls


@pytest.mark.parametrize("data", ["2", "2[]", "2[1]", '2["connect"]', '2["disconnect",1]'])
def test_an_event_that_is_not_a_name_and_arguments_is_refused(data):
    sio, seen = _server(SessionsServer)
    sio._handle_eio_message("eio1", data)
    assert seen.closed == ["eio1"] and not seen.calls


@pytest.mark.parametrize("error", [ValueError("ours"), KeyError("ours"), RecursionError()])
def test_an_exception_in_our_own_handler_is_not_the_clients_fault(error):
    """Raised by a handler (here, of the same types a decoder raises, and
    from inside python-socketio's packet module, which a check by traceback
    file name took for the client's): it propagates, as python-socketio
    lets it, and the connection is not closed for it."""
    sio, seen = _server(SessionsServer)

    @sio.on("boom")
    def boom(sid):
        socketio.packet.Packet(encoded_packet="2" + "[" * 5000) if isinstance(
            error, RecursionError) else None
        raise error

    with pytest.raises(type(error)):
        sio._handle_eio_message("eio1", '2["boom"]')
    assert seen.closed == []


def test_the_ack_handler_raising_on_the_shortcut_is_not_the_clients_fault():
    sio, seen = _server(SessionsServer)
    sio.handlers["/"]["ack"] = lambda sid, data: (_ for _ in ()).throw(ValueError("ours"))
    with pytest.raises(ValueError):
        sio._handle_eio_message("eio1", '2["ack",{"offset":5}]')
    assert seen.closed == []


OFFSETS = st.one_of(st.integers(0, 2**70).map(str),
                    st.text("0123456789", min_size=1, max_size=25),
                    st.text("0123456789١２ -+.eE", min_size=0, max_size=8))


@settings(max_examples=300, deadline=None)
@given(OFFSETS, st.sampled_from(['2["ack",{"offset":%s}]', '2["ack",{"offset": %s}]',
                                 '2["ack",{"offset":%s,"x":1}]', '2["ack", {"offset":%s}]']))
@example("007", '2["ack",{"offset":%s}]')
@example("12345678901234567890", '2["ack",{"offset":%s}]')
def test_an_ack_reaches_its_handler_as_python_socketio_would_give_it(offset, shape):
    """Through the shortcut or not, the handler is given what upstream gives
    it; what upstream cannot decode closes the connection instead."""
    message = shape % offset
    ours = _through(SessionsServer, [("eio1", message)])
    upstream, seen = _server(socketio.Server)
    try:
        upstream._handle_eio_message("eio1", message)
    except MALFORMED:
        assert ours[2] == ["eio1"] and ours[0] == "[]"
    else:
        assert ours == seen.normalised()


def test_an_ack_that_asks_for_a_reply_takes_the_general_path():
    sio, seen = _server(SessionsServer)
    assert not sio._handled_as_ack("eio1", '21["ack",{"offset":5}]')
    assert sio._handled_as_ack("eio1", '2["ack",{"offset":5}]')
    assert not sio._handled_as_ack("eio2", '2["ack",{"offset":5}]')  # not connected to "/"
    assert len(seen.calls) == 1


def test_a_message_while_a_binary_event_waits_for_its_attachment_is_that_attachment():
    sio, seen = _server(SessionsServer)
    sio._handle_eio_message("eio1", '51-["ack",{"_placeholder":true,"num":0}]')
    sio._handle_eio_message("eio1", '2["ack",{"offset":5}]')
    assert seen.calls and seen.calls[0][2] == '2["ack",{"offset":5}]'  # not an ack of 5


def test_the_server_class_follows_the_patches_in_force():
    everything = check(allow_unpatched=False)
    assert socketio_server_class(everything) is SessionsServer
    assert socketio_server_class(PatchesInForce(frozenset({SOCKETIO_MESSAGES}))) \
        is CheckedMessagesServer
    assert socketio_server_class(PatchesInForce(frozenset({ENGINEIO_SESSIONS}))) \
        is socketio.Server
    assert socketio_server_class(PatchesInForce(frozenset())) is socketio.Server
    sio = make_socketio_server(ping_interval=25, ping_timeout=8, cors_allowed_origins="*")
    assert type(sio) is SessionsServer and type(sio.eio) is WebSocketSessionServer
    plain = make_socketio_server(ping_interval=25, ping_timeout=8, cors_allowed_origins="*",
                                 patches=PatchesInForce(frozenset()))
    assert type(plain) is socketio.Server and type(plain.eio) is not WebSocketSessionServer
