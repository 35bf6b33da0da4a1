#!/usr/bin/env bash
# `make run`: InfluxDB (installed and started if INFLUX_URL is unset), the
# database's schema (migrate), then serve, jobs and (unless DEMO=0) the demo
# publisher. Ctrl-C or SIGTERM stops all of them, and the InfluxDB this
# script started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DEMO="${DEMO:-1}"
export PYTHONUNBUFFERED=1

started_influx=0
if [ -z "${INFLUX_URL:-}" ] && ! curl -sf -o /dev/null --max-time 2 http://127.0.0.1:8086/ping; then
  started_influx=1
fi
scripts/influxdb.sh start

pids=()
stop_all() {
  trap - INT TERM EXIT
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  if [ "$started_influx" = 1 ]; then scripts/influxdb.sh stop; fi
}
trap 'stop_all; exit 0' INT TERM  # asked to stop: a clean exit
trap stop_all EXIT

# The schema first, once (serve and jobs would each do it, one after the other).
$PY -m service migrate
$PY -m service serve & pids+=($!)
$PY -m service jobs & pids+=($!)
if [ "$DEMO" = 1 ]; then
  $PY -m service demo & pids+=($!)
fi

sleep 2
cat <<TXT

==> running. A user token for the JavaScript client (user "alice"):
    $($PY -m service token alice)
    node clients/js/receive.mjs http://${HOST:-127.0.0.1}:${PORT:-8000} <token>     (after: cd clients/js && npm ci)
==> query what was recorded:
    $PY -m service query 'SELECT sum("count") FROM "notify_publish" WHERE time > now() - 5m'
==> Ctrl-C stops everything.

TXT
# Stop everything as soon as one of them exits.
wait -n "${pids[@]}"
