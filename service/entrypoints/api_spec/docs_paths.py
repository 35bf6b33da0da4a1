"""/docs/ and /docs/{page}: the repository's docs as HTML, for people and for
the alert rules' runbook links (no token). Pure data."""

from __future__ import annotations

from typing import Any

from service.entrypoints.api_spec.builders import anchored, answer, param, ref
from service.entrypoints.api_spec.common import PUBLIC, error_of
from service.entrypoints.docs_site import PAGE_NAME

TAG = ["Public"]
HTML = {"text/html": {"schema": {"type": "string"}}}
SECURITY_HEADERS = {
    "Content-Security-Policy": {
        "required": True, "schema": {"type": "string"},
        "description": "no scripts, frames or content from elsewhere"},
}
PAGE = param("page", "path", {"type": "string", "pattern": anchored(PAGE_NAME.pattern)},
             "a file of docs/ without `.md`: `runbook` is docs/runbook.md")

PATHS: dict[str, Any] = {
    "/docs/": {"get": {
        "operationId": "docsIndex", "tags": TAG, "security": PUBLIC,
        "summary": "The docs: a list of the pages",
        "description": "Each page of docs/, linked. `GET /docs` redirects here.",
        "responses": {"200": {"description": "the list", "content": HTML,
                              "headers": SECURITY_HEADERS},
                      "default": ref("Error", "responses")},
    }},
    "/docs/{page}": {"get": {
        "operationId": "docsPage", "tags": TAG, "security": PUBLIC,
        "summary": "One page of the docs, as HTML",
        "description": "docs/`page`.md rendered to HTML, with no token: the base of "
                       "`DOCS_URL`, which the alert rules' runbook links are built on "
                       "(`$DOCS_URL/runbook#notifydeliveryp99high`). Headings carry "
                       "GitHub's anchors (lower-case, punctuation but `-` and `_` dropped, "
                       "spaces as `-`), so a link that works on GitHub works here; links "
                       "between the docs (`operations.md#rollups`) lead to the served page "
                       "(`operations#rollups`). Only the pages of docs/ are served: any other "
                       "name, `../` included, is a 404.",
        "parameters": [PAGE],
        "responses": {"200": {"description": "the page", "content": HTML,
                              "headers": SECURITY_HEADERS},
                      "404": answer("no page of that name in docs/", error_of("not_found")),
                      "default": ref("Error", "responses")},
    }},
}
