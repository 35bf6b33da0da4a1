"""The ``jobs`` process: the analysis jobs on an APScheduler scheduler, each
every ``interval_s`` through ``run_job`` (under a cluster-wide lock named
after the job, timed, its outcome recorded as ``job_run``), and a sample of
the process itself. docs/operations.md describes the jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import gevent
from apscheduler.schedulers.gevent import GeventScheduler
from sqlalchemy import Engine

from service.adapters.control_log import SqlControlLog
from service.adapters.influx import InfluxClient
from service.adapters.influx_analysis_writer import write_regressions
from service.adapters.influx_reader import InfluxAnalysisReader
from service.adapters.influx_rollups import InfluxRollupStore
from service.adapters.influx_series import InfluxMetricSeries
from service.adapters.runtime_metrics import RuntimeSampler
from service.config import Settings
from service.domain.changepoints import detect
from service.service_layer.analysis import (
    find_regressions,
    run_health,
    run_impact,
    run_recommendations,
)
from service.service_layer.job_runs import JobSpec, run_job
from service.service_layer.live_config import LiveConfig
from service.service_layer.ports import JobLock, Telemetry
from service.service_layer.rollups import run_rollups
from service.service_layer.trend_job import run_trends, trend_limits
from service.wiring.telemetry_factory import TelemetryPipeline

SAMPLE_INTERVAL_S = 10  # the process's own sample


@dataclass
class JobsProcess:
    scheduler: GeventScheduler  # the jobs and the process sample, added, not started
    telemetry: TelemetryPipeline
    sampler: RuntimeSampler
    control_log: SqlControlLog
    engine: Engine
    _tasks: list[Any] = field(default_factory=list)

    def start(self) -> None:
        # The whole process runs on gevent (patched at start), so the gevent
        # scheduler is the one that cooperates with the writer greenlet.
        self.control_log.start(gevent.spawn)
        self._tasks = [gevent.spawn(self.telemetry.writer.run), self.scheduler.start()]

    def job_names(self) -> list[str]:
        return [job.name for job in self.scheduler.get_jobs()]

    def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
        self.sampler.stop()
        self.control_log.stop()
        self.telemetry.writer.close()
        gevent.killall(self._tasks, timeout=2)
        self.engine.dispose()


def build_scheduler(jobs: list[JobSpec], lock: JobLock, sampler: RuntimeSampler,
                    telemetry: Telemetry) -> GeventScheduler:
    """The jobs, coalesced (a run still going when the next is due makes that
    one wait), and the process sample."""
    scheduler = GeventScheduler(job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(sampler.sample, "interval", seconds=SAMPLE_INTERVAL_S,
                      id="process-sample", name="process sample")
    schedule(scheduler, jobs, lock, telemetry)
    return scheduler


def build_jobs(settings: Settings, influx: InfluxClient, engine: Engine,
               config: LiveConfig, telemetry: Telemetry) -> list[JobSpec]:
    """Every analysis job, by name (``domain.job_names.JOB_NAMES``). ``config`` is
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
