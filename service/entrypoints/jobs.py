"""``python -m service jobs``: the analysis scheduler, in its own process.

For now it samples its own process into telemetry; rollups, trends, change
points, health and recommendations arrive with the analysis issue.
"""

from __future__ import annotations

import logging
import signal

import gevent
import gevent.event
from apscheduler.schedulers.gevent import GeventScheduler

from service.adapters.runtime_metrics import RuntimeSampler
from service.bootstrap import make_telemetry
from service.config import Settings
from service.entrypoints.runtime import start_process

log = logging.getLogger("service.jobs")


def run_jobs(settings: Settings) -> int:
    refused = start_process()
    if refused is not None:
        return refused
    ring, writer, _influx = make_telemetry(settings, "jobs")
    sampler = RuntimeSampler(ring)
    # The whole process runs on gevent (patched at start), so the gevent
    # scheduler is the one that cooperates with the writer greenlet.
    scheduler = GeventScheduler(job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(sampler.sample, "interval", seconds=10, id="process-sample",
                      name="process sample")
    writer_task = gevent.spawn(writer.run)
    scheduler_task = scheduler.start()
    stopping = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stopping.set)
    names = ", ".join(job.name for job in scheduler.get_jobs())
    print(f"jobs scheduler running on node {settings.node_id}: {names}", flush=True)
    stopping.wait()
    scheduler.shutdown(wait=False)
    sampler.stop()
    writer.close()
    gevent.killall([scheduler_task, writer_task], timeout=2)
    log.info("jobs stopped")
    return 0
