"""Generate docs/api.md from the OpenAPI document (service.entrypoints.api_spec).

    python -m service.entrypoints.api_doc           write the file
    python -m service.entrypoints.api_doc --check   fail if it is stale
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.entrypoints.api_spec import SPEC
from service.entrypoints.docgen import write_or_check

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = ("get", "put", "post", "delete", "patch")
TOKENS = {"publishToken": "`PUBLISH_TOKEN`", "adminToken": "`ADMIN_TOKEN`",
          "userToken": "the user's own token",
          "alertWebhookToken": "a token of `ALERT_WEBHOOK_TOKENS`"}
MAX_DEPTH = 3  # nesting of fields shown as rows (`a.b.c`)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def number(value: float) -> str:
    """1000000 -> 1,000,000; 2.5 stays 2.5."""
    return f"{value:,}" if float(value).is_integer() else str(value)


def cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


class Renderer:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.components = spec.get("components", {})
        self.shown = self.answer_schemas()  # the named schemas with a section of their own

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            _, _, kind, name = node["$ref"].split("/")
            node = self.components[kind][name]
        return node

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for path, item in self.spec["paths"].items():
            for method in METHODS:
                if method in item:
                    yield method.upper(), path, item[method]

    # -- schemas as tables -----------------------------------------------------

    def type_of(self, schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            if name not in self.shown:
                return self.type_of(self.resolve(schema))
            return f"[`{name}`](#{slug(name)})"
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.type_of(schema["allOf"][0])
        if "const" in schema:
            return f"`{json.dumps(schema['const'])}`"
        if "enum" in schema:
            return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
        kinds = schema.get("type", "any")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        names = []
        for kind in kinds:
            if kind == "array":
                kind = "array of " + self.type_of(schema.get("items", {}))
            elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
                kind = "object of " + self.type_of(schema["additionalProperties"])
            elif kind == "string" and "format" in schema:
                kind = f"string ({schema['format']})"
            names.append(kind)
        return " or ".join(names)

    @staticmethod
    def rule(schema: dict[str, Any]) -> str:
        parts = [schema["description"]] if "description" in schema else []
        if not parts:
            low, high = schema.get("minimum"), schema.get("maximum")
            if low is not None and high is not None:
                parts.append(f"{number(low)}–{number(high)}")
            elif low is not None:
                parts.append(f"at least {number(low)}")
            elif high is not None:
                parts.append(f"at most {number(high)}")
            if "maxLength" in schema:
                parts.append(f"at most {schema['maxLength']} characters")
        if "default" in schema and "default" not in " ".join(parts):
            parts.append(f"default `{json.dumps(schema['default'])}`")
        return "; ".join(parts)

    def rows(self, schema: dict[str, Any], prefix: str = "", expand: bool = True,
             depth: int = 0) -> Iterator[tuple[str, str, str, str]]:
        """(field, type, required, meaning) for each property, nested ones as
        ``a.b`` (array items as ``a[].b``); named schemas are linked unless
        ``expand``."""
        schema = self.resolve(schema)
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            shown = self._merged(prop) if expand else prop
            linked = not expand and ("$ref" in prop or "allOf" in prop)
            meaning = self.rule(prop if linked else shown)
            yield (f"`{prefix}{name}`", self.type_of(shown),
                   "yes" if name in required else "", meaning)
            inner = self.resolve(shown) if expand or "$ref" not in shown else {}
            if inner.get("type") == "array" and (expand or "$ref" not in inner["items"]):
                inner, name = self.resolve(inner["items"]), name + "[]"
            if depth + 1 < MAX_DEPTH and "properties" in inner:
                yield from self.rows(inner, f"{prefix}{name}.", expand, depth + 1)

    def _merged(self, prop: dict[str, Any]) -> dict[str, Any]:
        """A property with its $ref (or single allOf) resolved in place."""
        if "allOf" in prop and len(prop["allOf"]) == 1:
            return {**self.resolve(prop["allOf"][0]),
                    **{k: v for k, v in prop.items() if k != "allOf"}}
        return {**self.resolve(prop), **{k: v for k, v in prop.items() if k != "$ref"}}

    def table(self, schema: dict[str, Any], expand: bool) -> list[str]:
        rows = list(self.rows(schema, expand=expand))
        if not rows:
            return []
        return (["| field | type | required | meaning |", "| --- | --- | --- | --- |"]
                + [f"| {' | '.join(cell(c) for c in row)} |" for row in rows] + [""])

    @staticmethod
    def example(value: Any, lang: str = "json") -> list[str]:
        text = value if isinstance(value, str) else json.dumps(value, indent=2,
                                                              ensure_ascii=False)
        return [f"```{lang}", text, "```", ""]

    # -- operations --------------------------------------------------------------

    def operation(self, method: str, path: str, op: dict[str, Any]) -> list[str]:
        tokens = [TOKENS[name] for req in op.get("security", []) for name in req]
        who = f"Token: {' or '.join(tokens)}." if tokens else "No token."
        summary = op["summary"] + ("" if op["summary"].endswith((".", "?")) else ".")
        out = [f"### `{method} {path}`", "", f"**{summary}** {who}", ""]
        if op.get("description"):
            out += [op["description"], ""]
        params = [self.resolve(p) for p in op.get("parameters", [])]
        if params:
            out += ["| parameter | in | type | required | meaning |",
                    "| --- | --- | --- | --- | --- |"]
            out += [f"| `{p['name']}` | {p['in']} | {cell(self.type_of(p['schema']))} | "
                    f"{'yes' if p.get('required') else ''} | "
                    f"{cell(self.rule({**p['schema'], **p}))} |" for p in params]
            out.append("")
        if "requestBody" in op:
            out += self.request(op["requestBody"])
        out += self.responses(op["responses"])
        return out

    def request(self, request_body: dict[str, Any]) -> list[str]:
        media = request_body["content"]["application/json"]
        schema = self.resolve(media["schema"])
        required = "required" if request_body.get("required") else "optional"
        out = [f"Body: a JSON object ({required}).", ""]
        for text in (request_body.get("description"), schema.get("description")):
            if text:
                out += [text, ""]
        out += self.table(schema, expand=True)
        if "example" in media:
            out += ["For example:", ""] + self.example(media["example"])
        return out

    def responses(self, responses: dict[str, Any]) -> list[str]:
        out = ["| answer | meaning |", "| --- | --- |"]
        bodies = []
        for status, response in responses.items():
            response = self.resolve(response)
            if status == "default":
                out.append("| other | an [error](#errors) |")
                continue
            meaning = response["description"]
            for media, content in response.get("content", {}).items():
                schema = content["schema"]
                codes = self.resolve(schema).get("allOf", [{}, {}])[-1]
                codes = codes.get("properties", {}).get("error", {}).get("enum")
                if codes:
                    meaning = (", ".join(f"`{c}`" for c in codes) + f": {meaning} "
                               "([errors](#errors))")
                elif "$ref" in schema:
                    meaning += f"; `{media}` {self.type_of(schema)}"
                else:
                    meaning += f"; `{media}`" + ("" if media.endswith("json") else " text")
                    if media.endswith("json") and "properties" in schema:
                        bodies.append((status, content))
                if "example" in content and not codes:
                    bodies.append((status, content))
            headers = ", ".join(f"`{h}`" for h in response.get("headers", {}))
            if headers:
                meaning += f"; header {headers}"
            out.append(f"| {status} | {cell(meaning)} |")
        out.append("")
        seen = set()
        for status, content in bodies:
            if id(content) in seen:
                continue
            seen.add(id(content))
            out += [f"Answer {status}:", ""]
            if "$ref" not in content["schema"]:
                out += self.table(content["schema"], expand=False)
            if "example" in content:
                out += self.example(content["example"])
        return out

    # -- the document ------------------------------------------------------------

    def render(self) -> str:
        info = self.spec["info"]
        out = ["# HTTP API", "",
               "<!-- Generated by `make docs` from service/entrypoints/api_spec, the OpenAPI "
               "document served at GET /openapi.json. Do not edit. -->", "",
               info["description"], "", "## Contents", ""]
        tags = [t["name"] for t in self.spec.get("tags", [])]
        for tag in tags:
            links = [f"[`{m} {p}`](#{slug(f'{m} {p}')})"
                     for m, p, op in self.operations() if tag in op.get("tags", ())]
            out.append(f"- [{tag}](#{slug(tag)}): " + ", ".join(links))
        out += ["- [Errors](#errors)", "- [Schemas](#schemas): the answers' shapes", ""]
        for tag in self.spec.get("tags", []):
            out += [f"## {tag['name']}", "", tag.get("description", ""), ""]
            for method, path, op in self.operations():
                if tag["name"] in op.get("tags", ()):
                    out += self.operation(method, path, op)
        out += self.errors() + self.schemas()
        return "\n".join(out).rstrip("\n") + "\n"

    def errors(self) -> list[str]:
        error = self.components["schemas"]["Error"]
        out = ["## Errors", "", error["description"], ""] + self.table(error, expand=True)
        out += self.example(error["example"])
        out += ["| status | `error` | when |", "| --- | --- | --- |"]
        out += [f"| {e['status']} | `{e['error']}` | {cell(e['when'])} |"
                for e in self.spec.get("x-errors", [])]
        return out + [""]

    def schemas(self) -> list[str]:
        out = ["## Schemas", "", "The shapes of the answers above (and of what they contain). "
               "Answers may carry more fields than listed: ignore those you do not know.", ""]
        shown = self.answer_schemas()
        for name, schema in self.components["schemas"].items():
            if name not in shown or "properties" not in schema:
                continue
            out += [f"### `{name}`", ""]
            if schema.get("description"):
                out += [schema["description"], ""]
            out += self.table(schema, expand=False)
        return out


    def answer_schemas(self) -> set[str]:
        """The named schemas that answers use, directly or inside others."""
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                ref = node.get("$ref", "")
                if ref.startswith("#/components/schemas/"):
                    name = ref.rsplit("/", 1)[1]
                    if name not in found:
                        found.add(name)
                        walk(self.components["schemas"][name])
                elif ref:
                    walk(self.resolve(node))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        for _, _, op in self.operations():
            walk(op["responses"])
        return found - {"Error"}


def render(spec: dict[str, Any] | None = None) -> str:
    return Renderer(SPEC if spec is None else spec).render()


def main(argv: list[str]) -> int:
    return write_or_check(DOC, render(), argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
