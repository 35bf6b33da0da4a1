# The notification service: `serve` by default, `jobs` with
# `command: ["python", "-m", "service", "jobs"]` (see docker-compose.yml).
FROM python:3.11.7-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml ./
COPY service/ ./service/
# served at /docs/<page> (the alert rules' runbook links)
COPY docs/ ./docs/

ENV HOST=0.0.0.0 PORT=8000 VAR_DIR=/app/var

# Run unprivileged; var/ (telemetry spool) is the only place it writes.
RUN groupadd --system --gid 10001 notify \
    && useradd --system --uid 10001 --gid notify --home-dir /app --no-create-home notify \
    && mkdir -p /app/var \
    && chown notify:notify /app/var
USER notify

EXPOSE 8000

CMD ["python", "-m", "service", "serve"]
