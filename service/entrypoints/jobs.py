"""``python -m service jobs``: the analysis scheduler, in its own process.

It samples its own process into telemetry, and runs the analysis jobs that
``build_jobs`` lists, each every ``interval_s`` through ``run_job``: under a
cluster-wide lock named after the job (any number of nodes may run this
process), timed, with the outcome recorded as ``job_run``.
docs/operations.md describes the jobs.
"""

from __future__ import annotations

import logging
import signal
import sys
from datetime import UTC, datetime, timedelta

import gevent
import gevent.event
from apscheduler.schedulers.gevent import GeventScheduler
from sqlalchemy import Engine

from service.adapters.control_log import SqlControlLog, create_control_schema
from service.adapters.database import make_engine
from service.adapters.influx import InfluxClient
from service.adapters.influx_analysis_writer import write_regressions
from service.adapters.influx_reader import InfluxAnalysisReader
from service.adapters.influx_rollups import InfluxRollupStore
from service.adapters.influx_series import InfluxMetricSeries
from service.adapters.job_lock import job_lock_for
from service.adapters.runtime_metrics import RuntimeSampler
from service.bootstrap import make_telemetry
from service.config import Settings
from service.domain.changepoints import detect
from service.domain.errors import StorageUnavailable
from service.entrypoints.runtime import start_process
from service.service_layer.analysis import (
    find_regressions,
    run_health,
    run_impact,
    run_recommendations,
)
from service.service_layer.jobs import JobSpec, run_job
from service.service_layer.ports import JobLock, Telemetry
from service.service_layer.rollups import run_rollups
from service.service_layer.trends import run_trends, trend_limits
from service.service_layer.tuning import LiveConfig

log = logging.getLogger("service.jobs")


def build_jobs(settings: Settings, influx: InfluxClient, engine: Engine,
               config: LiveConfig, telemetry: Telemetry) -> list[JobSpec]:
    """Every analysis job, by name (``telemetry.JOB_NAMES``). ``config`` is
    the effective config, following the control log. To add a job, append a
    ``JobSpec(name, interval_s, run)`` whose ``run()`` returns its item count."""
    store = InfluxRollupStore(influx, settings.retention())
    series = InfluxMetricSeries(influx)

    def trends() -> int:
        limits = trend_limits(config.values, settings.telemetry_spool_max_bytes)
        return run_trends(series, store, limits)

    reader = InfluxAnalysisReader(influx)
    spool_max = settings.telemetry_spool_max_bytes
    # intervals and windows from JOB_INTERVALS and *_WINDOW_S (domain/job_settings.py)
    js = settings.jobs
    every = js.interval
    return [
        JobSpec("rollups", every("rollups"), lambda: run_rollups(store)),
        JobSpec("trends", every("trends"), trends),
        JobSpec("health", every("health"),
                lambda: run_health(reader, telemetry, config, spool_max,
                                   window=js.health_window)),
        JobSpec("recommendations", every("recommendations"),
                lambda: run_recommendations(reader, config, telemetry, settings.service_url,
                                            window=js.advice_window)),
        JobSpec("impact", every("impact"),
                lambda: run_impact(reader, config, auto_rollback=settings.auto_rollback,
                                   telemetry=telemetry, span=js.impact_window,
                                   min_after=js.impact_min_after)),
        JobSpec("regressions", every("regressions"),
                lambda: write_regressions(influx, find_regressions(series, detect))),
    ]


def schedule(scheduler: GeventScheduler, jobs: list[JobSpec], lock: JobLock,
             telemetry: Telemetry) -> None:
    """Each job every ``interval_s``, the first runs a few seconds from now,
    two seconds apart (so they do not all query InfluxDB at once); a run
    still going when the next is due makes that one wait (coalesced)."""
    first = datetime.now(UTC) + timedelta(seconds=5)
    for index, spec in enumerate(jobs):
        scheduler.add_job(run_job, "interval", args=(spec, lock, telemetry),
                          seconds=spec.interval_s, id=spec.name, name=spec.name,
                          next_run_time=first + timedelta(seconds=2 * index))


def run_jobs(settings: Settings) -> int:
    refused = start_process()
    if refused is not None:
        return refused
    ring, writer, influx = make_telemetry(settings, "jobs")
    sampler = RuntimeSampler(ring)
    engine = make_engine(settings.database_url, pool=settings.db_pool)
    control_log = SqlControlLog(engine)
    try:
        create_control_schema(engine)  # serialised: nodes may start together
        # the effective config, as every node folds it; no announcements from here
        config = LiveConfig(settings.optimization_level, settings.env_overrides(),
                            lambda _values: None, ring, log=control_log, announce=False)
    except StorageUnavailable as exc:
        print(f"refusing to start: {exc.message}", file=sys.stderr)
        return 4
    control_log.start(gevent.spawn)
    # The whole process runs on gevent (patched at start), so the gevent
    # scheduler is the one that cooperates with the writer greenlet.
    scheduler = GeventScheduler(job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(sampler.sample, "interval", seconds=10, id="process-sample",
                      name="process sample")
    schedule(scheduler, build_jobs(settings, influx, engine, config, ring),
             job_lock_for(engine, settings.var_dir), ring)
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
    control_log.stop()
    writer.close()
    gevent.killall([scheduler_task, writer_task], timeout=2)
    engine.dispose()
    log.info("jobs stopped")
    return 0
