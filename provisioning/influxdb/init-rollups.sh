#!/bin/bash
# Run once by the influxdb:2.x image at its first start (setup mode runs the
# scripts of /docker-entrypoint-initdb.d, with the CLI logged in as the admin).
# The analysis jobs write 1-minute and 1-hour rollups to the retention
# policies rollup_1m and rollup_1h of database "notify" (docs/querying.md):
# on 2.x each is a bucket, reached through a DBRP mapping.
set -euo pipefail
org="${DOCKER_INFLUXDB_INIT_ORG:?}"
for spec in "rollup_1m ${INFLUX_ROLLUP_1M_RETENTION:-90d}" "rollup_1h ${INFLUX_ROLLUP_1H_RETENTION:-730d}"; do
  read -r rp retention <<<"$spec"
  bucket_id=$(influx bucket create --org "$org" --name "notify_${rp}" \
    --retention "$retention" --hide-headers | cut -f1)
  influx v1 dbrp create --org "$org" --db notify --rp "$rp" --bucket-id "$bucket_id"
done
