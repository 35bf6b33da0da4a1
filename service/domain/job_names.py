"""The names of the scheduled analysis jobs: each one's ``job`` tag in
``job_run`` and its key in ``JOB_INTERVALS``. A module of its own, imported by
both the telemetry catalogue and the job settings, so that neither imports
the other (the catalogue reaches the settings through the advice rules)."""

# wiring.jobs_factory.build_jobs builds one job per name.
JOB_NAMES = ("rollups", "trends", "regressions", "health", "recommendations", "impact")
