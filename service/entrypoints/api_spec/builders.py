"""Small builders for the OpenAPI document's dicts, so that each area's
module reads as data: references, parameters, bodies and answers, integer
schemas, and patterns made from the code's own (which match whole)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def anchored(pattern: str) -> str:
    """A pattern the code matches whole (``fullmatch``), as JSON Schema's
    ``pattern``, which matches anywhere unless anchored."""
    depth = 0
    for i, char in enumerate(pattern):
        escaped = i > 0 and pattern[i - 1] == "\\"
        if not escaped and char in "([":
            depth += 1
        elif not escaped and char in ")]":
            depth -= 1
        elif not escaped and char == "|" and depth == 0:
            return f"^({pattern})$"
    return f"^{pattern}$"


def literal(text: str) -> str:
    """A pattern that matches ``text`` exactly: for an answer the code sends as is."""
    return "^" + "".join("\\" + c if c in "\\.^$*+?()[]{}|" else c for c in text) + "$"


def kib(size: int) -> str:
    """64 * 1024 -> "64 KiB", as the prose states a byte limit."""
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size:,} bytes"


def param(name: str, where: str, schema: dict[str, Any], description: str, *,
          required: bool | None = None) -> dict[str, Any]:
    """An operation's parameter; a path parameter is always required."""
    out: dict[str, Any] = {"name": name, "in": where}
    if required is not None or where == "path":
        out["required"] = required is not False
    return {**out, "schema": schema, "description": description}


def integer(minimum: int | None = 0, maximum: int | None = None,
            description: str | None = None, **more: Any) -> dict[str, Any]:
    """An integer schema: counts and offsets are at least 0 unless told."""
    out: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    out.update(more)
    if description:
        out["description"] = description
    return out


def json_content(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {JSON: media}


def answer(description: str, schema: dict[str, Any], example: Any = None,
           headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": json_content(schema, example)}
    if headers:
        out["headers"] = headers
    return out


def body(schema: dict[str, Any], example: Any = None, *, required: bool = True,
         description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"required": required, "content": json_content(schema, example)}
    if description:
        out["description"] = description
    return out
