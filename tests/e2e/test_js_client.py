"""The official JavaScript client (clients/js/notify-client.mjs) against a
real node: in Debian's chromium, driven by Playwright (no browser download:
``make test`` installs chromium), and in Node (clients/js/client-run.mjs).
Across restarts of the node it hands out every offset once, in order; it
resumes from the offset its store keeps, inflates compressed batches, fetches
a fresh token when one is refused, and passes on the server's ``reload``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from service.adapters.notification_log import recipients, streams
from tests.support.node_process import NodeEvents
from tests.support.py_client import PyClient, publish_n
from tests.support.repository import ROOT
from tests.support.server_process import RunningServer, start_server, stop_server
from tests.support.static_site import StaticSite
from tests.support.waiting import wait_for

JS = ROOT / "clients" / "js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BIG_TEXT = "é" * 150  # 30 of these replayed at once: a batch past COMPRESSION_MIN_BYTES

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>notify client under test</title>
<script type="importmap">
  {"imports": {"socket.io-client": "/vendor/socket.io.esm.min.js"}}
</script>
<script type="module">
  import { connect } from "/client/notify-client.mjs";
  const params = new URLSearchParams(location.search);
  window.received = [];
  window.reloads = [];
  window.errors = [];
  window.connects = 0;
  window.storageKey = "notify:last_offset:" + params.get("user");
  window.client = connect(params.get("node"), {
    token: async () => {
      const answer = await fetch("/token");
      if (!answer.ok) throw new Error(`the token endpoint answered ${answer.status}`);
      return answer.text();
    },
    storageKey: window.storageKey,
    socketOptions: { reconnectionDelay: 200, reconnectionDelayMax: 1000 },
  });
  client.on("notification", (n) => { window.received.push(n); });
  client.on("reload", (body) => { window.reloads.push(body); });
  client.on("error", (body) => { window.errors.push(body); });
  client.on("connect", () => { window.connects += 1; });
</script>
"""


def site_for(token: Callable[[], str]) -> StaticSite:
    """The test page, the client module and socket.io-client's ESM build."""
    vendor = JS / "node_modules" / "socket.io-client" / "dist"
    return StaticSite({
        "/": PAGE,
        "/client/notify-client.mjs": JS / "notify-client.mjs",
        "/vendor/socket.io.esm.min.js": vendor / "socket.io.esm.min.js",
        "/vendor/socket.io.esm.min.js.map": vendor / "socket.io.esm.min.js.map",
        "/examples/": JS / "examples" / "index.html",
    }, token)


@contextmanager
def browser_page():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
            page.console = console
            yield page
        finally:
            browser.close()


def wait_in_page(page, condition: str, what: str, timeout: float = 20.0) -> None:
    try:
        page.wait_for_function(condition, timeout=timeout * 1000)
    except Exception as exc:  # Playwright's TimeoutError: say what the page saw
        state = page.evaluate("""() => ({offsets: (window.received || []).map(n => n.offset),
            reloads: window.reloads, errors: window.errors, connects: window.connects,
            stats: window.client && window.client.stats})""")
        raise AssertionError(f"{what}: {state}; console: {page.console[-20:]}") from exc


def offsets(page) -> list[int]:
    return page.evaluate("window.received.map(n => n.offset)")


def acked_offset(pg_url: str, user: str) -> int | None:
    """The user's acknowledged offset, as the node stored it."""
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(streams.c.acked).where(streams.c.user_id == user)).scalar()
    finally:
        engine.dispose()


def restart(server: RunningServer, env: dict, tmp_path: Path) -> RunningServer:
    """The same node again (same port, same database) after a clean stop."""
    assert stop_server(server) == 0, server.log_text()
    return start_server({**env, "PORT": server.env["PORT"]}, tmp_path)


def test_a_browser_page_gets_what_it_missed_across_a_node_restart_once_and_in_order(
        pg_url, influx_database, tmp_path):
    env = {"DATABASE_URL": pg_url, "INFLUX_DB": influx_database}
    node = start_server(env, tmp_path)
    site = site_for(lambda: node.token("pia"))
    try:
        with browser_page() as page:
            page.goto(f"{site.url}/?node={node.url}&user=pia")
            wait_in_page(page, "window.connects >= 1", "the page did not connect")
            publish_n(node, "pia", 5)
            wait_in_page(page, "window.received.length >= 5", "5 live notifications")

            site.hold_tokens()  # the page's next connect waits for its token
            node = restart(node, env, tmp_path)
            assert site.held.wait(20), "the page did not come back to the restarted node"
            sent = [node.publish({"user_id": "pia", "category": "news",
                                  "payload": {"seq": 5 + i, "text": BIG_TEXT}})
                    for i in range(30)]  # while the page is away: offsets 6..35
            # pia's other device gets and acks them meanwhile: only the page's
            # last_offset (5), not the server's acked offset, brings them back
            other = PyClient(node.url, node.token("pia"))
            try:
                assert len(other.wait_for(30)) == 30
                assert wait_for(lambda: acked_offset(pg_url, "pia") == 35, 10)
            finally:
                other.close()
            site.release_tokens()
            wait_in_page(page, "window.received.length >= 35", "the 30 it missed")
            publish_n(node, "pia", 3, start=35)  # live again
            wait_in_page(page, "window.received.length >= 38", "3 live after the restart")
            time.sleep(0.5)  # a duplicate, if any came, would show now

            received = page.evaluate("window.received")
            assert [n["offset"] for n in received] == list(range(1, 39))
            assert [n["payload"]["seq"] for n in received] == list(range(38))
            assert [n["id"] for n in received[5:35]] == [a["id"] for a in sent]
            assert received[5]["payload"]["text"] == BIG_TEXT
            assert set(received[0]) == {"id", "offset", "category", "priority", "payload",
                                        "created_at"}
            stats = page.evaluate("window.client.stats")
            assert stats["compressedBatches"] >= 1, stats  # inflated by DecompressionStream
            assert stats["duplicatesDropped"] == 0, stats
            assert stats["tokenFetches"] >= 2 and site.token_requests >= 2, stats
            assert page.evaluate("window.errors") == []
            assert page.evaluate("localStorage.getItem(window.storageKey)") == "38"

            # a new page load resumes from what localStorage keeps (set back to 36
            # here: the server's own acked offset, 38, would give nothing back)
            page.evaluate("window.client.close()")
            page.evaluate("localStorage.setItem(window.storageKey, '36')")
            page.reload()
            wait_in_page(page, "window.connects >= 1", "the reloaded page did not connect")
            publish_n(node, "pia", 1, start=38)
            wait_in_page(page, "window.received.length >= 3", "37, 38 again, then 39")
            time.sleep(0.3)
            assert offsets(page) == [37, 38, 39]
            assert page.evaluate("localStorage.getItem(window.storageKey)") == "39"
    finally:
        site.close()
        assert stop_server(node) == 0, node.log_text()


def test_the_example_page_lists_what_arrives(server):
    site = site_for(lambda: server.token("ola"))
    # the example is served as the docs say (clients/js as the site's root)
    site.routes["/notify-client.mjs"] = JS / "notify-client.mjs"
    site.routes["/node_modules/socket.io-client/dist/socket.io.esm.min.js"] = (
        JS / "node_modules" / "socket.io-client" / "dist" / "socket.io.esm.min.js")
    try:
        with browser_page() as page:
            page.goto(f"{site.url}/examples/?node={server.url}&token_url=/token")
            page.wait_for_selector("#status:has-text('connected')", timeout=20000)
            server.publish({"user_id": "ola", "category": "greeting",
                            "payload": {"text": "hello from the test"}})
            page.wait_for_selector("#list li", timeout=20000)
            assert "hello from the test" in page.inner_text("#list")
    finally:
        site.close()


class NodeClient(NodeEvents):
    """clients/js/client-run.mjs: the official client in Node."""

    def __init__(self, url: str, *args: str) -> None:
        super().__init__([str(JS / "client-run.mjs"), url, *args])

    def wait_for(self, name: str, timeout: float = 20.0) -> dict:
        return self.expect(name, timeout)

    def finish(self, timeout: float = 30.0) -> dict:
        done = self.wait_for("done", timeout)
        self.process.wait(timeout=5)
        return done

    def offsets(self) -> list[int]:
        return [e["notification"]["offset"] for e in self.seen if e["event"] == "notification"]

    def errors(self) -> list[dict]:
        return [e["body"] for e in self.seen if e["event"] == "error"]


@pytest.fixture
def node_client():
    made: list[NodeClient] = []

    def make(url: str, *args: str) -> NodeClient:
        made.append(NodeClient(url, *args))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_node_client_resumes_from_its_store_and_acks_what_its_handlers_ran(
        server, node_client, tmp_path):
    publish_n(server, "nia", 5)  # nia is away
    store = tmp_path / "offsets.json"
    store.write_text(json.dumps({"notify:last_offset": 2}))  # what an earlier run kept
    client = node_client(server.url, "--token", server.token("nia"), "--store", str(store),
                         "--expect", "3")
    done = client.finish()
    assert client.offsets() == [3, 4, 5]  # from the stored offset on, not from 1
    assert done["stored"] == 5 and done["last_offset"] == 5
    assert json.loads(store.read_text()) == {"notify:last_offset": 5}
    assert client.errors() == []

    # the acks reached the server: a client with nothing stored gets what follows 5
    fresh = node_client(server.url, "--token", server.token("nia"), "--expect", "1")
    fresh.wait_for("connect")
    publish_n(server, "nia", 1, start=5)
    fresh.finish()
    assert fresh.offsets() == [6]


def test_node_client_inflates_compressed_batches_and_replaces_an_expired_token(
        pg_url, influx_database, tmp_path, node_client):
    secret = "a-test-jwt-secret-of-some-length-0123456789"
    node = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                         "JWT_SECRET": secret}, tmp_path)
    try:
        sent = [{"user_id": "kim", "category": "news", "payload": {"seq": i, "text": BIG_TEXT}}
                for i in range(30)]
        for body in sent:  # kim is away: the 30 come back as one replayed batch of ~8 KB
            node.publish(body)
        client = node_client(node.url, "--jwt-secret", secret, "--sub", "kim",
                             "--expired-first", "--expect", "30")
        done = client.finish()
        refused = client.errors()
        assert refused and refused[0]["error"] == "unauthorized", client.seen[:5]
        assert refused[0]["field"] == "token" and "expired" in refused[0]["detail"]
        assert len(refused) == 1
        assert client.offsets() == list(range(1, 31))
        payloads = [e["notification"]["payload"] for e in client.seen
                    if e["event"] == "notification"]
        assert payloads == [b["payload"] for b in sent]
        assert done["stats"]["compressedBatches"] >= 1, done
        assert done["stats"]["tokenFetches"] >= 2, done
    finally:
        assert stop_server(node) == 0, node.log_text()


def test_node_client_across_a_restart_and_a_trim_reloads_then_goes_on_in_order(
        pg_url, influx_database, tmp_path, node_client):
    env = {"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
           "OFFLINE_QUEUE_MAX": "5", "OFFLINE_TRIM_INTERVAL": "0.2"}
    node = start_server(env, tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(node.token("rex"))
    store = tmp_path / "rex.json"
    engine = create_engine(pg_url)
    try:
        client = node_client(node.url, "--token-file", str(token_file), "--store", str(store),
                             "--expect", "8", "--timeout-ms", "60000")
        client.wait_for("connect")
        publish_n(node, "rex", 3)
        assert wait_for(lambda: json.loads(store.read_text() if store.exists() else "{}")
                        .get("notify:last_offset") == 3, 10), client.seen
        token_file.unlink()  # its next connect waits for a token
        node = restart(node, env, tmp_path)
        assert client.wait_for("token", 20)["n"] >= 2
        publish_n(node, "rex", 10, start=3)  # offsets 4..13; only 9..13 are kept

        def kept() -> bool:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(recipients)
                                    .where(recipients.c.user_id == "rex")).scalar() == 5

        assert wait_for(kept, 10), "the bound of 5 entries was not applied"
        token_file.write_text(node.token("rex"))
        client.finish(60)
        assert client.offsets() == [1, 2, 3, 9, 10, 11, 12, 13]
        order = [(e["event"], e.get("notification", {}).get("offset")) for e in client.seen
                 if e["event"] in ("reload", "notification")]
        reload_at = order.index(("reload", None))
        assert [o for _, o in order[:reload_at]] == [1, 2, 3]  # before the gap...
        reload = next(e["body"] for e in client.seen if e["event"] == "reload")
        assert reload["reason"] == "trimmed" and reload["first_offset"] == 9
        assert json.loads(store.read_text()) == {"notify:last_offset": 13}
        assert client.errors() == []
    finally:
        engine.dispose()
        assert stop_server(node) == 0, node.log_text()


def test_node_client_acks_a_batch_only_once_its_handlers_have_finished(
        server, node_client, pg_url):
    client = node_client(server.url, "--token", server.token("sam"), "--stall-at", "3",
                         "--timeout-ms", "30000")
    client.wait_for("connect")
    publish_n(server, "sam", 2)
    assert wait_for(lambda: acked_offset(pg_url, "sam") == 2, 10), client.seen
    publish_n(server, "sam", 1, start=2)
    client.wait_for("stalled")
    time.sleep(1.0)  # an ack of 3 would have reached the node by now
    assert acked_offset(pg_url, "sam") == 2
    client.close()  # gone with offset 3 unhandled: it stays owed

    fresh = node_client(server.url, "--token", server.token("sam"), "--expect", "1")
    fresh.finish()
    assert fresh.offsets() == [3]


def test_node_client_starts_over_when_the_server_refuses_its_stored_offset(
        server, node_client, tmp_path):
    publish_n(server, "una", 2)
    store = tmp_path / "offsets.json"  # an offset from another database (restored, replaced)
    store.write_text(json.dumps({"notify:last_offset": 999}))
    client = node_client(server.url, "--token", server.token("una"), "--store", str(store),
                         "--expect", "2")
    done = client.finish()
    assert [e["error"] for e in client.errors()] == ["offset_out_of_range"]
    events = [e["event"] for e in client.seen if e["event"] in ("reload", "notification")]
    assert events == ["reload", "notification", "notification"]
    reload = next(e["body"] for e in client.seen if e["event"] == "reload")
    assert reload == {"reason": "offset_out_of_range", "epoch": None, "first_offset": None}
    assert client.offsets() == [1, 2]  # the server's offline queue, from its acked offset
    assert done["stored"] == 2
