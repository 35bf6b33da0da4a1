#!/bin/bash
# InfluxDB 2.x set-up for the notification service: the DBRP mappings that
# InfluxQL and the /write?db=&rp= API go through, the rollup buckets, and
# Grafana's read-only credentials.
#
# Run by the influxdb:2.7 image at its first start only: setup mode runs the
# executable *.sh of /docker-entrypoint-initdb.d with `run-parts
# --exit-on-error`, the CLI already logged in as the operator, and wipes the
# new instance when a script fails, so the next start tries again
# (influxdata-docker, influxdb/2.7/entrypoint.sh). Every step looks before it
# creates, so it can also be run by hand on an existing volume, e.g. one made
# by the old init-rollups.sh whose default mapping was rollup_1m (the CLI
# reads the operator token from INFLUX_TOKEN; the rest is in the container's
# environment):
#   docker compose exec influxdb sh -c \
#     'INFLUX_TOKEN=$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN /docker-entrypoint-initdb.d/init-buckets.sh'
#
# Database "notify" (the service's INFLUX_DB), retention policies:
#   raw        -> bucket notify (DOCKER_INFLUXDB_INIT_BUCKET, 7 days): the DEFAULT
#   rollup_1m  -> bucket notify_rollup_1m (INFLUX_ROLLUP_1M_RETENTION, 90d)
#   rollup_1h  -> bucket notify_rollup_1h (INFLUX_ROLLUP_1H_RETENTION, 730d)
#
# Why the order matters (influxdb v2.7 dbrp/service.go, Create): the first
# physical mapping of a database becomes its default, and once any physical
# mapping exists the bucket's virtual "notify/autogen" mapping is no longer
# the default (FindMany). `influx v1 dbrp create --default` does not help:
# the CLI parses the flag but never sends it (influx-cli
# clients/v1_dbrps/v1_dbrps.go, Create, up to 2.7.5). So raw is mapped first,
# made the default explicitly with `dbrp update --default` (which does send
# it), and checked at the end.
set -euo pipefail

org="${DOCKER_INFLUXDB_INIT_ORG:?DOCKER_INFLUXDB_INIT_ORG is set by the influxdb image}"
raw_bucket="${DOCKER_INFLUXDB_INIT_BUCKET:?DOCKER_INFLUXDB_INIT_BUCKET is set by the influxdb image}"
db=notify
read_user=grafana
read_token="${INFLUX_READ_TOKEN:-}"

die() {
  echo "init-buckets: $*" >&2
  exit 1
}

# Grafana's credentials: a v1 authorization (username + password) with read
# access to the three buckets only. A v2 token cannot be given a chosen value
# (POST /api/v2/authorizations has no token field: influxdb
# authorization/http_server.go, postAuthorizationRequest), but a v1
# authorization's password can, and InfluxQL's /query accepts it as Basic
# auth (http/legacy/influx1x_authentication_handler.go ->
# v1/authorization/authorizer.go, tryV1Authorization). The password is
# bcrypt-hashed: 8 bytes at least (MinPasswordLen), 72 at most.
if ((${#read_token} < 16 || ${#read_token} > 72)); then
  die "INFLUX_READ_TOKEN must be 16 to 72 characters (it has ${#read_token})"
fi

# "<id>" of a bucket, or nothing if there is none (the CLI fails on an
# unknown name, so the failure is read as "absent"; a real failure shows at
# the create that follows).
bucket_id() {
  influx bucket list --org "$org" --name "$1" --hide-headers 2>/dev/null | cut -f1 || true
}

# The physical mapping's id for db/rp, or nothing. `dbrp list` prints the
# physical mappings (ID, Database, Bucket ID, Retention Policy, Default,
# Virtual, Organization ID; tab-padded), then a "VIRTUAL DBRP MAPPINGS" table.
mapping_id() {
  influx v1 dbrp list --org "$org" --db "$db" --rp "$1" --hide-headers |
    awk -F'\t+' -v db="$db" -v rp="$1" '/^VIRTUAL/ { exit } $2 == db && $4 == rp { print $1; exit }'
}

ensure_mapping() { # rp bucket-id [--default]
  local rp=$1 bucket=$2
  shift 2
  if [[ -z "$(mapping_id "$rp")" ]]; then
    influx v1 dbrp create --org "$org" --db "$db" --rp "$rp" --bucket-id "$bucket" "$@"
  fi
  [[ -n "$(mapping_id "$rp")" ]] || die "no DBRP mapping $db/$rp after creating it"
}

# 1. Raw telemetry: db notify, rp raw -> the set-up bucket, the default.
raw_id="$(bucket_id "$raw_bucket")"
[[ -n "$raw_id" ]] || die "bucket $raw_bucket not found"
ensure_mapping raw "$raw_id" --default
influx v1 dbrp update --org "$org" --id "$(mapping_id raw)" --default

# 2. The rollups the analysis jobs write (ROLLUP_POLICIES in
#    service/domain/measurements/), never the default.
read_buckets=("$raw_id")
for spec in "rollup_1m ${INFLUX_ROLLUP_1M_RETENTION:-90d}" \
  "rollup_1h ${INFLUX_ROLLUP_1H_RETENTION:-730d}"; do
  read -r rp retention <<<"$spec"
  id="$(bucket_id "${db}_${rp}")"
  if [[ -z "$id" ]]; then
    id="$(influx bucket create --org "$org" --name "${db}_${rp}" \
      --retention "$retention" --hide-headers | cut -f1)"
  fi
  [[ -n "$id" ]] || die "bucket ${db}_${rp} was not created"
  ensure_mapping "$rp" "$id"
  read_buckets+=("$id")
done

default_rp="$(influx v1 dbrp list --org "$org" --db "$db" --default --hide-headers |
  awk -F'\t+' -v db="$db" '/^VIRTUAL/ { exit } $2 == db && $5 == "true" { print $4; exit }')"
[[ "$default_rp" == raw ]] || die "the default mapping of $db is '$default_rp', not raw"

# 3. Grafana reads with INFLUX_READ_TOKEN, never the operator token. Made
#    again on every run, so its permissions are exactly these.
existing="$(influx v1 auth list --org "$org" --username "$read_user" --hide-headers 2>/dev/null |
  cut -f1 || true)"
if [[ -n "$existing" ]]; then
  influx v1 auth delete --id "$existing"
fi
read_flags=()
for id in "${read_buckets[@]}"; do
  read_flags+=(--read-bucket "$id")
done
influx v1 auth create --org "$org" --username "$read_user" --password "$read_token" \
  --description "Grafana: read-only on $raw_bucket, ${db}_rollup_1m, ${db}_rollup_1h" \
  "${read_flags[@]}"
