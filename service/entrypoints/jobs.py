"""``python -m service jobs``: the analysis scheduler, in its own process.

For now it only reports its own liveness; rollups, trends, change points,
health and recommendations arrive with the analysis issue.
"""

from __future__ import annotations

import logging
import signal
import sys

import gevent
import gevent.event
from apscheduler.schedulers.gevent import GeventScheduler

from service.adapters.influx import InfluxClient
from service.adapters.influx_writer import InfluxWriter
from service.config import Settings
from service.entrypoints.runtime import NotMonkeyPatched, check_monkey_patched, configure_logging
from service.service_layer.telemetry import TelemetryRing

log = logging.getLogger("service.jobs")


def run_jobs(settings: Settings) -> int:
    configure_logging()
    try:
        check_monkey_patched()
    except NotMonkeyPatched as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 3
    ring = TelemetryRing()
    writer = InfluxWriter(
        ring, InfluxClient(settings.influx_settings()), {"node": settings.node_id, "role": "jobs"}
    )
    # The whole process runs on gevent (patched at start), so the gevent
    # scheduler is the one that cooperates with the writer greenlet.
    scheduler = GeventScheduler(job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(
        writer.report_self, "interval", seconds=10, id="heartbeat", name="telemetry heartbeat"
    )
    writer_task = gevent.spawn(writer.run)
    scheduler_task = scheduler.start()
    stopping = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stopping.set)
    print(
        f"jobs scheduler running on node {settings.node_id}: "
        f"{', '.join(job.name for job in scheduler.get_jobs())}",
        flush=True,
    )
    stopping.wait()
    scheduler.shutdown(wait=False)
    writer.stop()
    writer.report_self()
    writer.flush()
    gevent.killall([scheduler_task, writer_task], timeout=2)
    log.info("jobs stopped")
    return 0
