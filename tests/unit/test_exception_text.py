"""tests/support/exception_text.py: it flags what Python and the libraries
put in an exception's text, and passes every message the service itself
answers with (collected from service/, so a new message is checked too)."""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.exceptions import default_exceptions

from service.domain.errors import ServiceError
from service.domain.model import PublishRequest, parse_offset
from service.domain.token_bucket import parse_rates
from service.domain.tuning import TUNABLES
from service.entrypoints.http_input import json_body
from tests.support.exception_text import (
    assert_no_exception_text,
    assert_no_exception_text_in_js_events,
    exception_class_names,
    exception_text,
)

SERVICE = Path(__file__).resolve().parents[2] / "service"

# -- what must be flagged ------------------------------------------------------------------

LEAKS = [
    ("Traceback (most recent call last):\n  File \"x.py\", line 3, in f", "Traceback"),
    ('  File "/work/service/adapters/notification_log.py", line 120, in append', "File"),
    ('{"detail": "  File \\"/srv/app.py\\", line 7, in <module>"}', "File"),  # JSON-escaped
    ("KeyError: 'token'", "KeyError"),
    ("ValueError: invalid literal for int() with base 10: 'x'", "ValueError"),
    ("TypeError: 'NoneType' object is not subscriptable", "TypeError"),
    ("AttributeError: 'dict' object has no attribute 'offset'", "AttributeError"),
    ("RecursionError: maximum recursion depth exceeded", "RecursionError"),
    ("UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff", "UnicodeDecodeError"),
    ("json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)", "json"),
    ("Expecting value: line 1 column 1 (char 0)", "line 1 column 1"),
    ("KeyError('token')", "KeyError"),
    ("sqlalchemy.exc.OperationalError", "sqlalchemy"),
    ("(psycopg2.errors.AdminShutdown) terminating connection due to administrator command",
     "psycopg2"),
    ("(psycopg2.OperationalError) server closed the connection unexpectedly", "psycopg2"),
    ("server closed the connection unexpectedly\n\tThis probably means the server terminated",
     "server closed"),
    ('could not connect to server: Connection refused', "could not connect"),
    ('connection to server at "127.0.0.1", port 5432 failed: Connection refused',
     "connection to server at"),
    ("QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00",
     "QueuePool"),
    ("(Background on this error at: https://sqlalche.me/e/20/e3q8)", "Background"),
    ("redis.exceptions.ConnectionError: Error 111 connecting to localhost:6379.", "redis"),
    ("Error 111 connecting to localhost:6379. Connection refused.", "Error 111"),
    ("gevent.timeout.Timeout: 3 seconds", "gevent"),
    ("engineio.exceptions.ConnectionError", "engineio"),
    ("socketio.exceptions.ConnectionRefusedError", "socketio"),
    ("werkzeug.exceptions.BadRequestKeyError", "werkzeug"),
    ("<service.domain.model.Notification object at 0x7f3a2c1d9e50>", "<service"),
    ("<function handler at 0x7f3a2c1d9e50>", "<function"),
    ("unsupported NoneType here", "NoneType"),
    ("HTTPConnection(host='127.0.0.1', port=8086): Failed to establish a new connection: "
     "[Errno 111] Connection refused", "HTTPConnection"),
    ("[Errno 32] Broken pipe", "[Errno"),
    ("Exceeds the limit (4300 digits) for integer string conversion", "for integer"),
    ("OperationalError: could not translate host name", "OperationalError"),
    ("AdminShutdown: terminating connection", "AdminShutdown"),
    ("InvalidInput: offset must be a non-negative integer", "InvalidInput"),
    ("f() takes 2 positional arguments but 3 were given", "takes 2"),
]


@pytest.mark.parametrize(("text", "start"), LEAKS)
def test_exception_text_is_flagged(text, start):
    fragment = exception_text(text)
    assert fragment is not None, text
    assert fragment.lstrip("( ").startswith(start.lstrip("( ")), fragment
    assert fragment in text


def test_the_class_names_come_from_builtins_and_the_libraries():
    names = exception_class_names()
    for name in ("KeyError", "ValueError", "TypeError", "StopIteration", "KeyboardInterrupt",
                 "OperationalError", "IntegrityError", "DBAPIError", "AdminShutdown",
                 "UniqueViolation", "ConnectionRefusedError", "BadRequestKeyError",
                 "GreenletExit", "LoopExit", "NewConnectionError", "JSONDecodeError",
                 "InvalidInput", "StorageUnavailable"):
        assert name in names, name
    for word in ("Warning", "Timeout", "Gone", "Conflict", "Forbidden", "Throttled"):
        assert word not in names, word  # English words: only flagged when qualified


def test_assert_no_exception_text_names_where_and_the_fragment():
    with pytest.raises(AssertionError, match=r"POST /x.*'KeyError'"):
        assert_no_exception_text("POST /x", b'{"error": "x", "detail": "KeyError: 1"}')
    with pytest.raises(AssertionError, match="connect_error.*NoneType"):
        assert_no_exception_text("connect_error", {"message": "x", "data": {"d": "NoneType"}})
    assert_no_exception_text("clean", {"error": "invalid_input", "detail": "offset is bad"})
    assert_no_exception_text("nothing", None)


def test_the_javascript_clients_answers_are_each_checked():
    events = [{"event": "connect"}, {"event": "notifications", "batch": [{"p": "KeyError: x"}]},
              {"event": "ack", "reply": {"ok": True, "offset": 1}},
              {"event": "connect_error", "message": "the user token is not valid",
               "data": {"error": "unauthorized", "detail": "the user token is not valid"}}]
    assert_no_exception_text_in_js_events("client", events)  # a payload is not an answer
    for event, key in (("error", "body"), ("ack", "reply"), ("connect_error", "message"),
                       ("connect_error", "data"), ("disconnect", "reason")):
        leaked = {"event": event, key: {"detail": "(psycopg2.OperationalError) x"}}
        with pytest.raises(AssertionError, match=f"client: {event} {key}.*psycopg2"):
            assert_no_exception_text_in_js_events("client", [*events, leaked])


def test_the_clients_own_words_quoted_back_are_not_a_leak():
    answer = {"error": "invalid_input", "field": "event",
              "detail": "unknown event 'KeyError: x'; this server accepts ack"}
    assert_no_exception_text("ack reply", answer, sent='42["KeyError: x", {}]')
    with pytest.raises(AssertionError):
        assert_no_exception_text("ack reply", answer, sent='42["x", {}]')
    priority = "priority must be one of low|normal|high|critical, not 'NoneType'"
    assert_no_exception_text("body", priority, sent=b'{"priority": "NoneType"}')
    with pytest.raises(AssertionError):  # echoed, and a leak of its own besides
        assert_no_exception_text("body", priority + " KeyError: 'p'",
                                 sent=b'{"priority": "NoneType"}')


# -- what must pass: every message the service answers with ---------------------------------


def _error_classes(nodes: list[ast.AST]) -> set[str]:
    """ServiceError and every class under service/ that derives from it."""
    defined = [node for node in nodes if isinstance(node, ast.ClassDef)]
    found = {"ServiceError"}
    while True:
        more = {node.name for node in defined if node.name not in found
                and any(_name(base) in found for base in node.bases)}
        if not more:
            return found
        found |= more


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _render(node: ast.AST) -> list[str] | None:
    """The texts an expression makes, a placeholder for each value put in;
    None if it is not built of literals (a variable, a call)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        texts = [""]
        for part in node.values:
            if isinstance(part, ast.Constant):
                texts = [t + part.value for t in texts]
            else:  # a FormattedValue
                texts = [t + ("'x'" if part.conversion == ord("r") else "7") for t in texts]
        return texts
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _render(node.left), _render(node.right)
        if left is None or right is None:
            return None
        return [a + b for a in left for b in right]
    if isinstance(node, ast.IfExp):
        body, orelse = _render(node.body), _render(node.orelse)
        if body is None or orelse is None:
            return None
        return body + orelse
    return None


def _exception_names(nodes: list[ast.AST]) -> set[str]:
    """The names that hold a caught exception in this module: what ``except
    ... as NAME`` binds, and arguments typed as exceptions (``__exit__``'s)."""
    bound = {node.name for node in nodes
             if isinstance(node, ast.ExceptHandler) and node.name}
    typed = {node.arg for node in nodes
             if isinstance(node, ast.arg) and node.annotation is not None
             and re.search(r"Exception|Error", ast.unparse(node.annotation))}
    return bound | typed


def _interpolates(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


@cache
def service_messages() -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(where, message) for every message the service puts in an answer
    that can be read from its source, and (where, class, source) for each
    one made from a caught exception (reviewed below). Answers' messages
    are: a ServiceError's (the HTTP body's and the Socket.IO error's
    ``detail``, a refused connection's message), a ``"detail"`` in a dict
    literal (a JSON answer built by hand), and a status component's text."""
    modules = {str(path.relative_to(SERVICE.parent)): list(ast.walk(ast.parse(path.read_text())))
               for path in SERVICE.rglob("*.py")}
    classes = _error_classes([node for nodes in modules.values() for node in nodes])
    messages, from_exceptions = [], []
    for module, nodes in modules.items():
        caught = _exception_names(nodes)
        for node in nodes:
            argument = None
            if isinstance(node, ast.Call) and _name(node.func) in classes:
                argument = node.args[0] if node.args else next(
                    (k.value for k in node.keywords if k.arg == "message"), None)
            elif isinstance(node, ast.Call) and _name(node.func) == "_component":
                argument = node.args[1] if len(node.args) > 1 else None
            elif isinstance(node, ast.Dict):
                argument = next((v for k, v in zip(node.keys, node.values, strict=True)
                                 if isinstance(k, ast.Constant) and k.value == "detail"), None)
            if argument is None:
                continue
            if _interpolates(argument, caught):
                kind = _name(node.func) if isinstance(node, ast.Call) else "dict"
                from_exceptions.append((module, kind, ast.unparse(argument)))
                continue
            rendered = _render(argument)
            if rendered is not None:
                messages += [(f"{module}:{node.lineno}", text) for text in rendered]
    return messages, from_exceptions


def test_every_message_in_the_service_source_is_clean():
    messages, _ = service_messages()
    assert len(messages) > 100, len(messages)  # the collection found them
    flagged = [(where, text, exception_text(text)) for where, text in messages
               if exception_text(text) is not None]
    assert flagged == []


# Messages made from a caught exception, each read: none may carry the
# exception's text (the InfluxDB reader's did, until issue 18).
REVIEWED = {
    # parse_rates' own ValueError, its own words (checked below)
    ("service/domain/tuning.py", "InvalidInput", "str(exc)"),
    # where json's parser stopped, as numbers: not its words
    ("service/entrypoints/http_input.py", "MalformedRequest",
     "f'the body is not valid JSON (line {exc.lineno}, column {exc.colno})'"),
    # werkzeug's description of an HTTP error (nothing in service/ raises one with its
    # own words, nor calls request.get_json, whose 400 quotes json's parser)
    ("service/entrypoints/error_answers.py", "dict", "error.description"),
    # the status page's "the notification log" component: the StorageUnavailable's own message
    ("service/service_layer/status.py", "_component", "str(exc)"),
    # the history routes: UserTokens.verify's Unauthorized, its own words (as Socket.IO's
    # connect_error gives them: "the user token has expired (exp)")
    ("service/entrypoints/history_api.py", "Unauthorized",
     "f'the token is neither the publish token nor a valid user token ({exc.message})'"),
}


def test_every_message_made_from_an_exception_has_been_reviewed():
    _, from_exceptions = service_messages()
    found = set(from_exceptions)
    assert found == REVIEWED, (
        "a message built from a caught exception: does the answer carry its text? "
        f"{sorted(found - REVIEWED)}; gone: {sorted(REVIEWED - found)}")


def test_an_unreachable_influxdb_is_answered_in_the_services_own_words():
    from service.adapters.influx import InfluxClient, InfluxSettings
    from service.adapters.influx_reader import InfluxAnalysisReader

    reader = InfluxAnalysisReader(InfluxClient(InfluxSettings(url="http://127.0.0.1:9",
                                                              database="x", timeout=1.0)))
    with pytest.raises(ServiceError) as refused:
        reader._query("SELECT 1")
    assert_no_exception_text("StorageUnavailable", refused.value.to_dict())


def test_the_messages_made_at_run_time_are_clean():
    """The messages with values put in, made for real from bad input."""
    made = []

    def refused(call, *args) -> None:
        try:
            call(*args)
        except ServiceError as exc:
            made.append(json.dumps(exc.to_dict()))
        except ValueError as exc:  # parse_rates: the tuning API answers with its text
            made.append(str(exc))

    for value in (-1, 1.5, True, "3", 2**63, None, [], {}):
        refused(parse_offset, value, "offset")
    for body in ({}, [], {"user_id": "a", "category": "c", "priority": "urgent"},
                 {"user_id": "a b", "category": "c"}, {"user_ids": [], "category": "c"},
                 {"user_id": "a", "category": "c", "payload": "x"}, {"x": 1},
                 {"user_id": "a", "user_ids": ["b"], "category": "c"},
                 {"user_id": "a", "category": "c", "payload": {"b": "x" * 70_000}}):
        refused(PublishRequest.from_body, body)
    for raw in ("high=x", "low=1:0", "urgent=1:1", "high=nan:nan", "high=1:2:3"):
        refused(parse_rates, raw, {})
    for tunable in TUNABLES.values():
        for value in ("x", -1e9, 1e18, True, None):
            refused(tunable.check, value)
    app = Flask(__name__)
    for raw in (b"", b"{not json", b"\xff\xfe", b"[1, 2", b"NaN", b'{"a": 1e400}',
                b'{"a": 1' + b"0" * 5000 + b"}", b"[" * 100 + b"]" * 100, b'"\\ud800"',
                b'{"a": "\\udfff x"}', b"x" * 2000):
        with app.test_request_context(data=raw, content_type="application/json"):
            refused(json_body, 1000)
    assert len(made) > 40
    assert [(text, exception_text(text)) for text in made if exception_text(text)] == []


def test_the_http_errors_werkzeug_answers_with_are_clean():
    """What error_answers.py's HTTPException handler answers: werkzeug's own name
    and description of each status."""
    for code, kind in default_exceptions.items():
        error = kind()
        for text in (error.name or "", error.description or ""):
            assert exception_text(text) is None, (code, text)
