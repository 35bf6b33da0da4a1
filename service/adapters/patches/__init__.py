"""Every override of a library's private API, fenced in one package.

Each module here replaces one piece of a library's internals, and says in
its docstring which function, for which version, why, and where the figure
is (docs/library-patches.md). Only the versions a patch was written for are
trusted: ``check`` compares the installed versions with those, and on a
mismatch refuses to start, or with ``ALLOW_UNPATCHED=1`` leaves that patch
out and the library's own behaviour in force.

The classes that use a patch take a ``PatchesInForce``; given none, they
check for themselves and refuse a mismatch, so no patch ever runs on a
version it was not written for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

ENGINEIO_SESSIONS = "engineio_sessions"
SOCKETIO_MESSAGES = "socketio_messages"
WEBSOCKET_FRAMES = "websocket_frames"
CLUSTER_CHANNEL = "cluster_channel"
POOL_CHECKOUT = "pool_checkout"

# Per open idle WebSocket, with the Engine.IO sessions patch in force and
# without it (docs/library-patches.md, "Memory per connection").
SESSIONS_CONNECTION_BYTES = 27 * 1024
UPSTREAM_CONNECTION_BYTES = 46 * 1024


@dataclass(frozen=True)
class Patch:
    name: str  # the module in this package
    replaces: str  # the upstream functions it overrides
    written_for: tuple[tuple[str, str], ...]  # (distribution, version) it was written against
    fallback: str  # what runs instead when it is left out


PATCHES: tuple[Patch, ...] = (
    Patch(ENGINEIO_SESSIONS,
          "engineio.socket.Socket (send, close, schedule_ping, _websocket_handler), "
          "engineio.Server._handle_connect and create_queue, "
          "socketio.Server._engineio_server_class; writes frames with "
          "geventwebsocket.websocket.Header and the handler's socket",
          (("python-engineio", "4.15.1"), ("python-socketio", "5.18.1"),
           ("gevent-websocket", "0.10.1")),
          "Engine.IO's own sessions: a writer and a ping greenlet per connection"),
    Patch(SOCKETIO_MESSAGES,
          "socketio.Server._handle_eio_message and _handle_event",
          (("python-socketio", "5.18.1"),),
          "python-socketio's dispatch: a malformed packet logs a traceback and "
          "leaves the connection open; every ack goes through the packet decoder"),
    Patch(WEBSOCKET_FRAMES,
          "geventwebsocket.websocket.WebSocket.read_frame, read_message and validate_utf8",
          (("gevent-websocket", "0.10.1"),),
          "gevent-websocket's reader: a frame is read whole before its length is "
          "refused (Engine.IO refuses it after)"),
    Patch(CLUSTER_CHANNEL,
          "socketio.pubsub_manager.PubSubManager._handle_emit (and a call of its _publish)",
          (("python-socketio", "5.18.1"),),
          "no relay between nodes: entries reach other nodes through the log follower, "
          "acks and trims are not heard (as while Redis is down)"),
    Patch(POOL_CHECKOUT,
          "sqlalchemy.pool.QueuePool._do_get",
          (("SQLAlchemy", "2.1.9"),),
          "SQLAlchemy's QueuePool: checkouts are not timed (db_pool waits stay 0)"),
)
_BY_NAME = {patch.name: patch for patch in PATCHES}


@dataclass(frozen=True)
class Mismatch:
    patch: str
    package: str
    installed: str | None  # None: not installed
    expected: str

    def describe(self) -> str:
        installed = self.installed or "not installed"
        return (f"{self.package} {installed} is installed; the patch {self.patch} "
                f"was written for {self.expected}")


@dataclass(frozen=True)
class PatchesInForce:
    """Which patches run, and what that means for memory."""

    names: frozenset[str]
    left_out: tuple[Mismatch, ...] = ()

    def __contains__(self, name: object) -> bool:
        return name in self.names

    @property
    def connection_bytes(self) -> int:
        """What one idle WebSocket costs with the patches in force."""
        return (SESSIONS_CONNECTION_BYTES if ENGINEIO_SESSIONS in self.names
                else UPSTREAM_CONNECTION_BYTES)

    def summary(self) -> str:
        """One line for the log at start-up."""
        if not self.left_out:
            return f"library patches in force: {', '.join(sorted(self.names))}"
        left = "; ".join(m.describe() for m in self.left_out)
        return (f"ALLOW_UNPATCHED=1: left out ({left}); in force: "
                f"{', '.join(sorted(self.names)) or 'none'}; "
                f"{self.connection_bytes // 1024} KB per connection assumed")


class UnpatchedLibrary(RuntimeError):
    """An installed library is not the version a patch was written for."""

    def __init__(self, mismatches: Iterable[Mismatch]) -> None:
        self.mismatches = tuple(mismatches)
        lines = "\n".join(f"  - {m.describe()}" for m in self.mismatches)
        super().__init__(
            "refusing to start: a library overridden through its private API is not the "
            f"version its patch was written for:\n{lines}\n"
            "Install the pinned versions (pyproject.toml), or set ALLOW_UNPATCHED=1 to run "
            "without those patches: the libraries' own behaviour then runs instead, and the "
            "connection limits shrink to the memory an upstream session takes "
            "(docs/library-patches.md).")


@functools.cache
def installed_version(distribution: str) -> str | None:
    """The installed version (fixed for the life of the process), or None."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def check(allow_unpatched: bool, *, only: Iterable[str] | None = None,
          installed: Callable[[str], str | None] = installed_version) -> PatchesInForce:
    """Compare the installed versions with those each patch (of ``only``, or
    all) was written for. A mismatch raises UnpatchedLibrary, unless
    ``allow_unpatched``: then the mismatched patches are left out."""
    patches = PATCHES if only is None else tuple(_BY_NAME[name] for name in only)
    mismatches = [Mismatch(patch.name, package, installed(package), expected)
                  for patch in patches for package, expected in patch.written_for
                  if installed(package) != expected]
    if mismatches and not allow_unpatched:
        raise UnpatchedLibrary(mismatches)
    left_out = {m.patch for m in mismatches}
    return PatchesInForce(frozenset(p.name for p in patches if p.name not in left_out),
                          tuple(mismatches))


@functools.cache
def require(name: str) -> None:
    """For a patched class built without a PatchesInForce: refuse a version
    the patch was not written for."""
    check(allow_unpatched=False, only=(name,))


def in_force(patches: PatchesInForce | None, name: str) -> bool:
    """Whether ``name`` runs: as ``patches`` says, or, given none, if the
    installed versions are those it was written for (else UnpatchedLibrary)."""
    if patches is None:
        require(name)
        return True
    return name in patches
