"""GET /docs/<page>, on the app create_app wires: the docs as HTML with
GitHub's anchors, so that every alert rule's runbook link lands on its
heading; nothing outside docs/ is reachable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from service.config import Settings
from service.entrypoints.docs_site import DOCS_DIR, github_anchor, render, served_href
from tests.support.api_app import create_test_app

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "provisioning" / "alerting" / "rules.yml"


@pytest.fixture
def client(sqlite_url, tmp_path):
    app = create_test_app(Settings.from_env({
        "DATABASE_URL": sqlite_url, "VAR_DIR": str(tmp_path / "var"),
        "PUBLISH_TOKEN": "docs-publish-token-0123456789",
        "ADMIN_TOKEN": "docs-admin-token-0123456789", "USER_TOKEN_SECRET": "docs-secret",
        "INFLUX_URL": "http://127.0.0.1:9", "TELEMETRY_ENABLED": "0"}))
    yield app.flask.test_client()
    app.close()


def ids_in(page_html: str) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', page_html))


def runbook_urls(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "runbook_url" and isinstance(v, str)]
        return found + [u for v in node.values() for u in runbook_urls(v)]
    if isinstance(node, list):
        return [u for v in node for u in runbook_urls(v)]
    return []


def test_every_runbook_link_of_the_alert_rules_lands_on_a_heading(client):
    urls = runbook_urls(yaml.safe_load(RULES.read_text()))
    assert len(urls) >= 10
    response = client.get("/docs/runbook")
    assert response.status_code == 200 and response.mimetype == "text/html"
    ids = ids_in(response.get_data(as_text=True))
    for url in urls:
        page, _, anchor = url.rpartition("#")
        assert page.rstrip("/").endswith("runbook") or page.endswith("runbook.md"), url
        assert anchor in ids, f"{url}: no heading with id {anchor!r} in /docs/runbook"


def test_no_token_is_needed_and_the_page_is_locked_down(client):
    response = client.get("/docs/operations")
    assert response.status_code == 200
    assert "<h1" in response.get_data(as_text=True)
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    index = client.get("/docs/").get_data(as_text=True)
    assert 'href="runbook"' in index and 'href="operations"' in index
    assert client.get("/docs").status_code in (301, 308)  # to /docs/


@pytest.mark.parametrize("path", [
    "/docs/nope", "/docs/runbook.md", "/docs/README", "/docs/../README.md",
    "/docs/..%2FREADME", "/docs/..%2F..%2Fetc%2Fpasswd", "/docs/%2e%2e%2fpyproject",
    "/docs/..", "/docs/.%2Frunbook", "/docs/runbook%00",
])
def test_only_pages_of_docs_are_served(client, path):
    response = client.get(path)
    assert response.status_code == 404, path
    assert response.get_json()["error"] == "not_found"


def test_links_between_docs_lead_to_the_served_pages(client):
    runbook = client.get("/docs/runbook").get_data(as_text=True)
    hrefs = re.findall(r'href="([^"]+)"', runbook)
    assert "operations#recommendations-and-alerts" in hrefs
    assert not [h for h in hrefs if re.search(r"\.md(#|$)", h) and "://" not in h]
    operations = client.get("/docs/operations").get_data(as_text=True)
    assert "recommendations-and-alerts" in ids_in(operations)
    pages = {p.stem for p in DOCS_DIR.glob("*.md")}
    for href in hrefs:
        target = href.partition("#")[0]
        if target and "/" not in target and ":" not in target:
            assert target in pages, href


@pytest.mark.parametrize(("heading", "anchor"), [
    ("NotifyDeliveryP99High", "notifydeliveryp99high"),
    ("On InfluxDB 2.x and 3.x", "on-influxdb-2x-and-3x"),
    ("Health, recommendations and measured impact", "health-recommendations-and-measured-impact"),
    ("batch_timeout_ms (live)", "batch_timeout_ms-live"),
    ("Socket.IO rate-limits", "socketio-rate-limits"),
])
def test_anchors_are_githubs(heading, anchor):
    assert github_anchor(heading) == anchor


def test_headings_get_githubs_anchors_markup_and_repeats_included():
    _title, body = render("# The `raw` policy\n\n## Again\n\n## Again\n\n## *Why* it's so\n")
    assert re.findall(r'id="([^"]+)"', body) == ["the-raw-policy", "again", "again-1",
                                                  "why-its-so"]


@pytest.mark.parametrize(("href", "served"), [
    ("operations.md#rollups", "operations#rollups"), ("api.md", "api"),
    ("#local", "#local"), ("https://example.com/x.md", "https://example.com/x.md"),
    ("../README.md", "../README.md"),
])
def test_doc_links_are_rewritten_to_the_served_path(href, served):
    assert served_href(href) == served
