"""``python -m service jobs``: the analysis scheduler, in its own process.

``service.bootstrap.create_jobs`` builds it (the jobs are listed in
``service/wiring/jobs_factory.py``); this starts it and stops it on SIGTERM
or SIGINT. Any number of nodes may run it: each job runs under a
cluster-wide lock named after it. docs/operations.md describes the jobs.
"""

from __future__ import annotations

import logging
import signal
import sys

import gevent
import gevent.event

from service.bootstrap import create_jobs
from service.config import Settings
from service.domain.errors import StorageUnavailable
from service.entrypoints.runtime import (
    UNPATCHED_EXIT,
    library_patches,
    migrate_database,
    start_process,
)

log = logging.getLogger("service.jobs")


def run_jobs(settings: Settings) -> int:
    refused = start_process()
    if refused is not None:
        return refused
    refused = migrate_database(settings, starting=True)  # the schema first, explicitly
    if refused:
        return refused
    patches = library_patches(settings)
    if patches is None:
        return UNPATCHED_EXIT
    try:
        process = create_jobs(settings, patches)
    except StorageUnavailable as exc:
        print(f"refusing to start: {exc.message}", file=sys.stderr)
        return 4
    process.start()
    stopping = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stopping.set)
    print(f"jobs scheduler running on node {settings.node_id}: "
          f"{', '.join(process.job_names())}", flush=True)
    stopping.wait()
    process.stop()
    log.info("jobs stopped")
    return 0
