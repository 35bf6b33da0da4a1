"""Our own messages between nodes on python-socketio's Redis channel.

Replaces, in python-socketio 5.18.1:
``socketio.pubsub_manager.PubSubManager._handle_emit`` (on RedisManager),
and calls ``socketio.RedisManager._publish`` and ``host_id``.

Why: the nodes already share python-socketio's Redis connection and
channel; a second subscription would be a second connection per node and a
second listener greenlet. Our messages travel as ``emit`` messages in a
namespace no client can join, and ``_handle_emit`` picks them out before
python-socketio would look for clients in it; every other message is
python-socketio's, handled as upstream. ``_publish`` answers None when Redis
failed (it logs the error), which the relay counts.

Left out (ALLOW_UNPATCHED=1 on another python-socketio), nothing is sent or
picked out: the other nodes' entries come through the log follower, and
their acks and trims are not heard, as while Redis is down
(docs/library-patches.md; docs/operations.md, "Several nodes").

Contract test: tests/integration/test_patch_cluster_channel.py (real Redis).
"""

from __future__ import annotations

from typing import Any, ClassVar

import socketio


class PeerMessagesManager(socketio.RedisManager):
    """RedisManager that also carries this application's messages between
    nodes, in the namespace ``peer_namespace``."""

    peer_namespace: ClassVar[str]
    relay_in_force: bool = True  # False: the patch left out, upstream's manager only

    def take_peer_message(self, message: dict) -> None:
        """A message another node published in ``peer_namespace``."""
        raise NotImplementedError

    def publish_peer_message(self, event: str, data: Any, **fields: Any) -> bool:
        """Publish on the shared channel; False if Redis failed (or the patch
        is left out)."""
        if not self.relay_in_force:
            return False
        message = {"method": "emit", "event": event, "data": data,
                   "namespace": self.peer_namespace, "room": None, "skip_sid": None,
                   "callback": None, "binary": False, "host_id": self.host_id, **fields}
        return self._publish(message) is not None  # upstream logs, and answers None, on failure

    def _handle_emit(self, message: Any, *args: Any, **kwargs: Any) -> Any:
        if (self.relay_in_force and isinstance(message, dict)
                and message.get("namespace") == self.peer_namespace):
            self.take_peer_message(message)
            return None
        return super()._handle_emit(message, *args, **kwargs)
