"""Wire text that is already encoded. Pure: no I/O, no encoder."""

from __future__ import annotations


class RawJSON(str):
    """A str that already holds one JSON value, to be sent as is.

    The Socket.IO adapter's JSON module splices it into packets without
    re-encoding it (``service.adapters.wire_json``).
    """

    __slots__ = ()
