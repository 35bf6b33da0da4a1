"""A Socket.IO client written by hand over a plain WebSocket, so that the test
decides what the client does after the handshakes (often: nothing)."""

from __future__ import annotations

import json

import websocket

from tests.support.server_process import RunningServer


def raw_socketio_client(server: RunningServer, user: str, **options) -> websocket.WebSocket:
    """Engine.IO and Socket.IO handshakes by hand, so that the test decides
    what the client does next (nothing, in these tests)."""
    ws = websocket.create_connection(
        server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
        timeout=10, **options)
    assert str(ws.recv()).startswith("0")  # Engine.IO open
    ws.send("40" + json.dumps({"token": server.token(user)}))
    assert str(ws.recv()).startswith("40")  # Socket.IO connected
    return ws
