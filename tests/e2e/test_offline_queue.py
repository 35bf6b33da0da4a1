"""The offline queue's bounds, end to end: trimmed entries are never a silent gap."""

import time

from sqlalchemy import create_engine, func, select

from service.adapters.notification_log import recipients, streams
from tests.support.server_process import start_server, stop_server


def test_a_client_back_after_trimming_is_told_to_reload(pg_url, influx_database, tmp_path,
                                                        js_client):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "OFFLINE_QUEUE_MAX": "3", "OFFLINE_TRIM_INTERVAL": "0.2"}, tmp_path)
    engine = create_engine(pg_url)
    try:
        for i in range(6):  # eve is away: all six wait in her offline queue
            server.publish({"user_id": "eve", "category": "t", "payload": {"seq": i}})
        deadline = time.monotonic() + 10
        kept = None
        while time.monotonic() < deadline and kept != 3:
            with engine.connect() as conn:
                kept = conn.execute(select(func.count()).select_from(recipients)
                                    .where(recipients.c.user_id == "eve")).scalar()
            time.sleep(0.1)
        assert kept == 3, "the bound of 3 entries was not applied"
        client = js_client(server.url, server.token("eve"), "--expect", "3")
        reload = client.wait_for("reload")["body"]
        with engine.connect() as conn:
            epoch = conn.execute(select(streams.c.epoch).where(streams.c.user_id == "eve")).scalar()
        # one trim or two, as the publishes and the trimmer's rounds interleave
        assert epoch >= 2
        assert reload == {"reason": "trimmed", "epoch": epoch, "first_offset": 4}
        client.finish()
        assert [n["offset"] for n in client.notifications()] == [4, 5, 6]
        # the reload came before anything that follows the gap
        order = [e["event"] for e in client.seen if e["event"] in ("reload", "notifications")]
        assert order[0] == "reload"
    finally:
        engine.dispose()
        assert stop_server(server) == 0, server.log_text()
