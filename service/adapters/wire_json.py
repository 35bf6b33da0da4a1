"""The JSON module python-socketio encodes packets with (``Server(json=...)``).

It is the standard one, except that a ``RawJSON`` argument — text that is
already JSON — is spliced into the packet as is. A batch of notifications is
then encoded once, by the hub, and the same text goes to every connection
that receives it, instead of being re-encoded per recipient.

Decoding stays engine.io's, which refuses absurdly long integers.
"""

from __future__ import annotations

import json as _json
from typing import Any

from engineio.json import loads  # noqa: F401 - part of this module's interface

from service.domain.wire import RawJSON


def dumps(obj: Any, **kwargs: Any) -> str:
    if type(obj) is list and len(obj) == 2 and type(obj[1]) is RawJSON:
        return f"[{_json.dumps(obj[0])},{obj[1]}]"
    return _json.dumps(obj, **kwargs)
