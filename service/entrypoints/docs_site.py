"""GET /docs/<page>: the repository's docs (docs/<page>.md) as HTML, with no
token, so that a link from an alert (``${DOCS_URL}/runbook#notifyredisdown``)
opens where the admin already is, not on a code host.

- Headings get GitHub's anchors (``github_anchor``), so a fragment that works
  on GitHub works here too.
- Links between docs (``operations.md#rollups``) are rewritten to the served
  path (``operations#rollups``).
- Only the pages found in docs/ at start are served: a page is looked up by
  name among them, never joined to a path, so ``../`` reaches nothing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

import markdown
from flask import Blueprint, Response, abort
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"  # /app/docs in the image
PAGE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_DOC_LINK = re.compile(r"(?P<page>[A-Za-z0-9_-]+)\.md(?P<fragment>#.*)?")
# the pages are ours, but a page is the only thing this route serves: no
# scripts, no frames, nothing fetched from elsewhere
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;
padding:0 1rem;color:#1f2328}pre,code{font:0.9em ui-monospace,monospace;
background:#f6f8fa}pre{padding:0.8rem;overflow:auto}table{border-collapse:collapse}
td,th{border:1px solid #d0d7de;padding:0.3rem 0.6rem}a{color:#0969da}
nav{font-size:0.9em;margin-bottom:1rem}"""


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading (its rendered text): lower-case,
    punctuation dropped except ``-`` and ``_``, each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def github_slugify() -> Callable[[str, str], str]:
    """The toc extension's ``slugify``, GitHub's way, for one page: a repeated
    heading's anchor gets ``-1``, ``-2``… (the extension's own suffix is ``_1``)."""
    seen: dict[str, int] = {}

    def slugify(value: str, _separator: str) -> str:
        anchor = github_anchor(value)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        return f"{anchor}-{count}" if count else anchor

    return slugify


def served_href(href: str) -> str:
    """``operations.md#x`` -> ``operations#x``; any other link unchanged."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        return href
    found = _DOC_LINK.fullmatch(href)
    if found is None:
        return href
    return found["page"] + (found["fragment"] or "")


class _DocLinks(Treeprocessor):
    def run(self, root: Element) -> None:
        for link in root.iter("a"):
            href = link.get("href")
            if href:
                link.set("href", served_href(href))


class _DocLinksExtension(Extension):
    def extendMarkdown(self, md: markdown.Markdown) -> None:
        md.treeprocessors.register(_DocLinks(md), "doc_links", 5)


def render(text: str) -> tuple[str, str]:
    """A page's Markdown -> (its title, its HTML body)."""
    md = markdown.Markdown(
        extensions=["toc", "tables", "fenced_code", "sane_lists", _DocLinksExtension()],
        extension_configs={"toc": {"slugify": github_slugify()}})
    body = md.convert(text)
    titles = [t["name"] for t in getattr(md, "toc_tokens", []) if t["level"] == 1]
    return (html.unescape(titles[0]) if titles else ""), body


def page_html(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f'<body><nav><a href="./">All docs</a></nav>\n{body}\n</body></html>\n')


def pages_in(directory: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(directory.glob("*.md"))
            if PAGE_NAME.fullmatch(path.stem)}


def docs_blueprint(directory: Path = DOCS_DIR) -> Blueprint:
    bp = Blueprint("docs", __name__)
    pages = pages_in(directory)
    rendered: dict[str, str] = {}  # the docs do not change while the process runs

    def answer(document: str) -> Response:
        response = Response(document, mimetype="text/html")
        response.headers.update(SECURITY_HEADERS)
        return response

    @bp.get("/docs/")
    def index() -> Response:
        items = "\n".join(f'<li><a href="{html.escape(name)}">{html.escape(name)}</a></li>'
                          for name in pages)
        return answer(page_html("Docs", f"<h1>Docs</h1>\n<ul>\n{items}\n</ul>"))

    @bp.get("/docs/<page>")
    def show(page: str) -> Response:
        path = pages.get(page)
        if path is None:
            abort(404, f"no page {page!r} in the docs")
        if page not in rendered:
            rendered[page] = page_html(*render(path.read_text(encoding="utf-8")))
        return answer(rendered[page])

    return bp
