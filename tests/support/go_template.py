"""The part of Grafana's annotation templating the alert rules use, to check
what a summary reads like in each state of a rule.

Grafana 11.2 (pkg/services/ngalert/state/template/template.go, Expand)
prefixes every annotation with
``{{- $labels := .Labels -}}{{- $values := .Values -}}{{- $value := .Value -}}``
and runs it as a Go text/template with ``missingkey=invalid`` and the
Prometheus template functions. What follows from Go's text/template:

- a missing map key is an invalid value, and so is any field of it; printed,
  it is ``<no value>``, which Grafana replaces with ``[no value]``;
- ``{{ if X }}`` of an invalid value is false (``isTrue``), of a struct true;
- a function given an invalid value fails (``humanize`` cannot convert
  ``<nil>``), and then Grafana keeps the annotation's template text as it is
  (state/cache.go, ``expand``: "keep the original template on error").

``$values.<ref>`` is a ``Value`` (``Labels``, ``Value`` float64). The data per
state (state/cache.go ``expandAnnotationsAndLabels``, eval/eval.go):

- normal: ``$labels`` = the series' labels (and Grafana's alertname,
  grafana_folder...), ``$values`` = every reduce/math/threshold number whose
  labels match the instance's;
- no data: ``$values`` empty, ``$labels`` without the series' labels
  (``datasource_uid`` and ``ref_id`` when a query returned nothing);
- error: ``$values`` empty, ``$labels`` without the series' labels.

Supported: text, ``{{ if }}``/``{{ else }}``/``{{ end }}``, ``{{ with }}``,
``{{- -}}`` trimming, ``$labels.x``, ``$values.X.Value``, ``$value``, ``.``
inside ``with``, and the functions ``humanize``, ``humanize1024``,
``humanizePercentage``, ``toUpper``, ``toLower``. Anything else raises
``TemplateError``, so a summary cannot use what this module does not model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NO_VALUE = "[no value]"


class TemplateError(Exception):
    """Grafana would fail to expand the template and show it raw."""


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


INVALID = _Invalid()


@dataclass(frozen=True)
class Value:
    Value: float
    Labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    labels: dict[str, str]
    values: dict[str, Value]
    value: str = ""


# --------------------------------------------------------------------------
# The Prometheus functions (prometheus/template/template.go)


def _to_float(argument: object) -> float:
    if argument is INVALID or argument is None:
        raise TemplateError("can't convert <nil> to float")
    if isinstance(argument, str):
        try:
            return float(argument)
        except ValueError as exc:
            raise TemplateError(f"can't convert {argument!r} to float") from exc
    if isinstance(argument, int | float):
        return float(argument)
    raise TemplateError(f"can't convert {type(argument).__name__} to float")


def _g(value: float) -> str:
    """Go's %.4g."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def humanize(argument: object) -> str:
    v = _to_float(argument)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return _g(v) + prefix


def humanize1024(argument: object) -> str:
    v = _to_float(argument)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix, v = p, v / 1024
    return _g(v) + prefix


def humanize_percentage(argument: object) -> str:
    return _g(_to_float(argument) * 100) + "%"


def _text(argument: object) -> str:
    if argument is INVALID:
        raise TemplateError("invalid value; expected string")
    return str(argument)


FUNCTIONS = {
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizePercentage": humanize_percentage,
    "toUpper": lambda a: _text(a).upper(),
    "toLower": lambda a: _text(a).lower(),
}


# --------------------------------------------------------------------------
# Parsing

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.DOTALL)


def _tokens(template: str) -> list[tuple[str, str]]:
    """[("text", ...) | ("action", ...)], with {{- -}} trimming applied."""
    out: list[tuple[str, str]] = []
    position = 0
    trim_next = False
    for match in _ACTION.finditer(template):
        text = template[position:match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", match.group(2)))
        trim_next = bool(match.group(3))
        position = match.end()
    tail = template[position:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    if "{{" in "".join(t for kind, t in out if kind == "text"):
        raise TemplateError("unclosed action")
    return out


def _parse(tokens: list[tuple[str, str]], stop: tuple[str, ...] = ()) -> tuple[list, str]:
    """Nodes up to one of ``stop`` (which is returned), or the end."""
    nodes: list = []
    while tokens:
        kind, body = tokens.pop(0)
        if kind == "text":
            nodes.append(("text", body))
            continue
        word = body.split(None, 1)[0] if body else ""
        if word in stop:
            return nodes, word
        if word in ("if", "with"):
            condition = body[len(word):].strip()
            then, ended = _parse(tokens, ("else", "end"))
            otherwise: list = []
            if ended == "else":
                otherwise, ended = _parse(tokens, ("end",))
            if ended != "end":
                raise TemplateError(f"{word} without end")
            nodes.append((word, condition, then, otherwise))
        elif word in ("else", "end", "range", "define", "template", "block"):
            raise TemplateError(f"unexpected or unsupported {{{{ {word} }}}}")
        else:
            nodes.append(("print", body))
    if stop:
        raise TemplateError(f"missing {' or '.join(stop)}")
    return nodes, ""


# --------------------------------------------------------------------------
# Evaluation


def _field(receiver: object, name: str) -> object:
    if receiver is INVALID:
        return INVALID  # missingkey=invalid: a field of nothing is nothing
    if isinstance(receiver, dict):
        return receiver.get(name, INVALID)
    if isinstance(receiver, Value) and name in ("Value", "Labels"):
        return getattr(receiver, name)
    raise TemplateError(f"can't evaluate field {name} in {receiver!r}")


def _operand(token: str, variables: dict[str, object], dot: object) -> object:
    if re.fullmatch(r"-?\d+(\.\d+)?", token):
        return float(token) if "." in token else int(token)
    if token.startswith('"') and token.endswith('"'):
        return token[1:-1]
    if token.startswith("$"):
        name, *fields = token.split(".")
        if name not in variables:
            raise TemplateError(f"undefined variable {name}")
        value = variables[name]
    elif token == "." or token.startswith("."):
        fields = [f for f in token.split(".") if f]
        value = dot
    else:
        raise TemplateError(f"unsupported operand {token!r}")
    for name in fields:
        value = _field(value, name)
    return value


def _pipeline(body: str, variables: dict[str, object], dot: object) -> object:
    if "|" in body or "(" in body:
        raise TemplateError(f"unsupported pipeline {body!r}")
    words = body.split()
    if not words:
        raise TemplateError("empty action")
    if words[0] in FUNCTIONS:
        arguments = [_operand(w, variables, dot) for w in words[1:]]
        if len(arguments) != 1:
            raise TemplateError(f"{words[0]} takes one argument")
        return FUNCTIONS[words[0]](arguments[0])
    if len(words) != 1:
        raise TemplateError(f"unknown function {words[0]!r}")
    return _operand(words[0], variables, dot)


def _truth(value: object) -> bool:
    if value is INVALID or value is None:
        return False
    if isinstance(value, Value):
        return True  # a struct
    return bool(value)


def _printed(value: object) -> str:
    if value is INVALID:
        return NO_VALUE
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _run(nodes: list, variables: dict[str, object], dot: object) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "print":
            out.append(_printed(_pipeline(node[1], variables, dot)))
        else:
            kind, condition, then, otherwise = node
            value = _pipeline(condition, variables, dot)
            if _truth(value):
                out.append(_run(then, variables, value if kind == "with" else dot))
            else:
                out.append(_run(otherwise, variables, dot))
    return "".join(out)


def expand(template: str, data: Data) -> str:
    """The annotation as Grafana shows it; TemplateError where Grafana would
    fail and show the template itself."""
    nodes, _ = _parse(_tokens(template))
    variables: dict[str, object] = {"$labels": data.labels, "$values": data.values,
                                    "$value": data.value}
    root = {"Labels": data.labels, "Values": data.values, "Value": data.value}
    return _run(nodes, variables, root)
