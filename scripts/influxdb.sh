#!/usr/bin/env bash
# Install (if missing) and start a project-local InfluxDB 1.x on 127.0.0.1:8086.
#
#   scripts/influxdb.sh start   install Debian's influxdb if needed, start it, wait for /ping
#   scripts/influxdb.sh stop    stop the influxd this script started
#
# If INFLUX_URL is set, this script leaves InfluxDB to you and only waits for it.
# Data lives under var/influxdb, so the project never touches /var/lib/influxdb.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/var/influxdb"
PORT="${INFLUX_LOCAL_PORT:-8086}"
URL="${INFLUX_URL:-http://127.0.0.1:$PORT}"

answers() { curl -sf -o /dev/null --max-time 2 "$URL/ping"; }

install_influxdb() {
  command -v influxd >/dev/null && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "influxd is missing; run as root or: sudo apt-get install influxdb" >&2
    exit 1
  fi
  echo "==> installing Debian's influxdb (apt-get update first)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends influxdb influxdb-client >/dev/null
}

wait_ready() {
  for _ in $(seq 1 60); do
    answers && return 0
    sleep 0.5
  done
  echo "InfluxDB did not answer at $URL within 30 s; see $DIR/influxd.log" >&2
  exit 1
}

start() {
  if answers; then echo "==> InfluxDB answers at $URL"; return 0; fi
  if [ -n "${INFLUX_URL:-}" ]; then
    echo "==> waiting for InfluxDB at $INFLUX_URL (INFLUX_URL is set, so not starting one)"
    wait_ready
    return 0
  fi
  install_influxdb
  mkdir -p "$DIR"
  cat > "$DIR/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$((PORT + 2))"
[meta]
  dir = "$DIR/meta"
[data]
  dir = "$DIR/data"
  wal-dir = "$DIR/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$PORT"
  log-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
CONF
  echo "==> starting influxd on 127.0.0.1:$PORT (data in $DIR)"
  nohup influxd -config "$DIR/influxdb.conf" >"$DIR/influxd.log" 2>&1 &
  echo $! >"$DIR/influxd.pid"
  wait_ready
}

stop() {
  if [ -f "$DIR/influxd.pid" ]; then
    kill "$(cat "$DIR/influxd.pid")" 2>/dev/null || true
    rm -f "$DIR/influxd.pid"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
