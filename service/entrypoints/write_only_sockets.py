"""The Socket.IO side of a publish-only node (``WRITE_ONLY=1``): it refuses
every client with a reason, so a load balancer misrouting users shows up at
once instead of as users who never receive anything."""

from __future__ import annotations

from typing import Any

import socketio

from service.domain.errors import PublishOnlyNode
from service.entrypoints.error_answers import socket_error


def refuse_sockets(sio: socketio.Server) -> None:
    @sio.event
    def connect(sid: str, environ: dict, auth: Any = None) -> None:
        error = PublishOnlyNode("this node only publishes (WRITE_ONLY=1); connect to a "
                                "node that delivers")
        raise socketio.exceptions.ConnectionRefusedError(error.message, socket_error(error))
