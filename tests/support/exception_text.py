"""Does a text carry a Python exception's text?

The design promises that no answer and no ``connect_error`` ever carries a
Python exception's text: what went wrong inside is logged, under an
``error_id`` the answer names, and the client gets the service's own words.
``exception_text`` is that promise as a check, for the fuzzers and the fault
tests to run on every answer body, Socket.IO ``error`` event, ack reply and
``connect_error`` they provoke.

It looks for what Python, SQLAlchemy, psycopg2, redis-py, urllib3, gevent
and the json module put in an exception's text: a traceback, a ``File "…",
line N`` frame, an exception class followed by ``:`` or ``(`` (the class
names are collected from ``builtins`` and from those libraries' exception
modules, not typed in), a module-qualified name of one of those libraries,
an object's default repr, and the libraries' own well-known phrases. The
service's own error messages must all pass it clean
(tests/unit/test_exception_text.py runs every one through it).

A client may send any text, and some answers quote what they were sent (an
unknown event's name, a bad priority): ``assert_no_exception_text(...,
sent=...)`` takes what was sent, and a fragment found in it is the client's
own words coming back, not a leak. (Hypothesis also feeds the string
constants it finds in the project's modules under service/ to its text
strategies, and the fuzzers send what it makes.)
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

# Modules whose exception classes an answer must never name; each is
# imported if installed (the service's dependencies, so they are).
EXCEPTION_MODULES = (
    "sqlalchemy.exc",
    "psycopg2",
    "psycopg2.errors",
    "psycopg2.extensions",
    "redis.exceptions",
    "engineio.exceptions",
    "socketio.exceptions",
    "werkzeug.exceptions",
    "gevent",
    "gevent.exceptions",
    "greenlet",
    "urllib3.exceptions",
    "itsdangerous.exc",
    "json",
    "socket",
    "ssl",
    "http.client",
    "concurrent.futures",
    # the service's own: its answers say what went wrong, not "InvalidInput: …"
    "service.domain.errors",
    "service.domain.backpressure_policy",
    "service.domain.connections",
    "service.domain.socket_rate_limits",
    "service.domain.token_bucket",
    "service.adapters.influx",
)

# Libraries whose dotted names (``sqlalchemy.exc.OperationalError``,
# ``psycopg2.errors.AdminShutdown``, ``gevent.timeout.Timeout``) are
# exception text wherever they stand. Case matters: "Redis did not answer" is
# the service's own sentence, "redis.exceptions" is not.
QUALIFIED_PREFIXES = (
    "sqlalchemy", "psycopg2", "psycopg", "redis", "engineio", "socketio", "werkzeug",
    "gevent", "greenlet", "urllib3", "requests", "flask", "itsdangerous", "builtins",
    "json.decoder", "http.client", "ssl", "concurrent.futures", "asyncio",
)

# Fixed phrases of the libraries' own messages (and Python's).
PHRASES = (
    # Python
    "Traceback (most recent call last)",
    "During handling of the above exception",
    "The above exception was the direct cause",
    "NoneType",
    "object has no attribute",
    "object is not subscriptable",
    "object is not iterable",
    "object is not callable",
    "unhashable type",
    "unsupported operand type(s)",
    "referenced before assignment",
    "values to unpack",
    "index out of range",
    "maximum recursion depth exceeded",
    "invalid literal for int() with base",
    "could not convert string to float",
    "division by zero",
    "dictionary changed size during iteration",
    "for integer string conversion",  # int("1" + "0" * 5000)
    "sys.set_int_max_str_digits",
    "Out of range float values are not JSON compliant",
    "is not JSON serializable",
    "codec can't decode",
    "codec can't encode",
    "surrogates not allowed",
    "invalid start byte",
    "invalid continuation byte",
    # SQLAlchemy
    "QueuePool limit of size",
    "Background on this error at",
    "(Background on this error",
    "sqlalche.me/e/",
    "[SQL: ",
    "[parameters: ",
    "This result object does not return rows",
    "Can't reconnect until invalid transaction is rolled back",
    "This Connection is closed",
    # psycopg2 / libpq / PostgreSQL
    "server closed the connection unexpectedly",
    "could not connect to server",
    "connection to server at",
    "connection to server on socket",
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "could not receive data from server",
    "could not send data to server",
    "SSL connection has been closed unexpectedly",
    "connection already closed",
    "cursor already closed",
    "duplicate key value violates unique constraint",
    "violates foreign key constraint",
    "deadlock detected",
    "canceling statement due to",
    # redis-py
    "Timeout reading from socket",
    "Timeout connecting to server",
    "Connection closed by server",
    # urllib3
    "Max retries exceeded with url",
    "Failed to establish a new connection",
    # gevent
    "This operation would block forever",
)

PATTERNS = (
    r'File \\?"[^"\n]{1,300}?\\?", line \d+',  # a traceback's frame, raw or JSON-escaped
    r"<[^<>\n]{1,200} object at 0x[0-9a-fA-F]+>",  # a default repr
    r"<(?:function|bound method|built-in function|class|module) [^<>\n]{1,200}>",
    r"\bat 0x[0-9a-fA-F]{6,}",
    r"\[Errno -?\d+\]",  # OSError
    r"\[WinError \d+\]",
    r"\bError -?\d+ connecting to\b",  # redis-py
    r"\b\w*Connection(?:Pool)?\(host=",  # urllib3
    r"\btakes (?:from \d+ to )?\d+ positional arguments? but \d+ (?:was|were) given",
    r"\bmissing \d+ required (?:positional|keyword-only) arguments?",
    r"\bgot an unexpected keyword argument\b",
    r"\bline \d+ column \d+ \(char \d+\)",  # json.JSONDecodeError
)


def _exception_classes(module: object) -> Iterator[type[BaseException]]:
    for _, value in inspect.getmembers(module, inspect.isclass):
        if issubclass(value, BaseException):
            yield value


def _is_distinctive(name: str) -> bool:
    """A class name no sentence of the service's would hold before a colon:
    ``KeyError``, ``StopIteration``, ``AdminShutdown``, ``GreenletExit``, but
    not ``Warning``, ``Timeout``, ``Gone`` or ``Conflict``."""
    if name in ("Exception", "BaseException"):
        return True
    if re.search(r"(?:Error|Exception|Exit|Interrupt|Iteration)$", name) and name[0].isupper():
        return True
    return bool(re.fullmatch(r"[A-Z][a-z0-9]+(?:[A-Z]+[a-z0-9]*)+", name))


@cache
def exception_class_names() -> frozenset[str]:
    """The names a leak would show: every builtin exception class, and every
    exception class of the modules above (those that are installed)."""
    names = {name for name, value in vars(builtins).items()
             if isinstance(value, type) and issubclass(value, BaseException)}
    for module_name in EXCEPTION_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        names.update(cls.__name__ for cls in _exception_classes(module))
    return frozenset(n for n in names if _is_distinctive(n))


@cache
def _matchers() -> tuple[re.Pattern[str], ...]:
    names = "|".join(sorted(map(re.escape, exception_class_names()), key=len, reverse=True))
    prefixes = "|".join(map(re.escape, QUALIFIED_PREFIXES))
    return (
        re.compile("|".join(map(re.escape, PHRASES))),
        re.compile("|".join(PATTERNS)),
        # a class name, then ":" (str of a raised exception) or "(" (its repr)
        re.compile(rf"(?<![\w.])(?:{names})(?=\s?[:(])"),
        # a dotted name within one of the libraries: sqlalchemy.exc.OperationalError
        re.compile(rf"(?<![\w.])\(?(?:{prefixes})(?:\.[A-Za-z_]\w*)+"),
    )


def exception_fragments(text: str) -> list[str]:
    """Every fragment of ``text`` that looks like Python exception text, in
    the order they stand."""
    found: list[tuple[int, str]] = []
    for matcher in _matchers():
        found.extend((m.start(), m.group()) for m in matcher.finditer(text))
    return [fragment for _, fragment in sorted(found)]


def exception_text(text: str) -> str | None:
    """The first fragment of ``text`` that looks like it carries a Python
    exception's text, or None if it reads as the service's own words."""
    fragments = exception_fragments(text)
    return fragments[0] if fragments else None


def _strings(value: Any) -> Iterator[str]:
    """Every string within a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _texts(value: Any) -> list[str]:
    """``value`` as texts to search: itself (bytes decoded, structures as
    JSON) and, when it is or holds JSON, every string within it unescaped."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        texts = [value]
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return texts
        return texts + [s for s in _strings(value) if s != texts[0]]
    try:
        texts = [json.dumps(value, ensure_ascii=False, default=repr)]
    except (ValueError, TypeError, RecursionError):
        texts = [repr(value)]
    return texts + list(_strings(value))


def _echoed(fragment: str, sent: list[str]) -> bool:
    return any(fragment in s or fragment in repr(s) for s in sent)


def assert_no_exception_text(where: str, text: Any, *, sent: Any = None) -> None:
    """AssertionError, naming ``where`` and the fragment, if ``text`` (a
    str, bytes, or a decoded JSON value: a body, an ``error`` event, an ack
    reply, a ``connect_error``'s message or data) carries Python exception
    text. A fragment that ``sent`` (what the client sent) holds too is the
    client's own words quoted back, and passes."""
    sent_texts: list[str] | None = None
    for candidate in _texts(text):
        for fragment in exception_fragments(candidate):
            if sent_texts is None:
                sent_texts = _texts(sent)
            if not _echoed(fragment, sent_texts):
                raise AssertionError(
                    f"{where}: exception text {fragment!r} in the answer: {candidate[:500]!r}")


# What clients/js/receive.mjs reports (tests/e2e/conftest.py's JsClient.seen)
# that the node said: an error event's body, an ack's reply, a refused
# connection's message and data, a disconnect's reason.
JS_ANSWERS = {"error": ("body",), "ack": ("reply",), "connect_error": ("message", "data"),
              "disconnect": ("reason",)}


def assert_no_exception_text_in_js_events(where: str, events: list[dict]) -> None:
    """The check above on every answer among a JavaScript client's events."""
    for event in events:
        for key in JS_ANSWERS.get(event.get("event", ""), ()):
            assert_no_exception_text(f"{where}: {event['event']} {key}", event.get(key))
