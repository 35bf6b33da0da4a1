#!/bin/bash
# Fills DOCS_URL into the alert rules' runbook links and writes Grafana's
# alerting provisioning (service "render-alerting" in docker-compose.yml,
# which Grafana waits for).
#
#   render-alerting.sh <provisioning/alerting> <output directory>
#
# Why not Grafana itself: Grafana expands $VAR in most provisioning fields,
# but keeps alert rule annotations as written (runbook_url is one), so that
# {{ $labels.node }} and $values survive (pkg/services/provisioning/alerting,
# rules_types.go: `alertRule.Annotations = rule.Annotations.Raw`; PR #54975;
# "Labels are interpolated but Annotations aren't", PR #84106). So the
# literal ${DOCS_URL} in rules.yml is replaced here, and only that: the other
# ${...} (the contact points' secrets) are left for Grafana to expand from
# its own environment.
set -euo pipefail

source_dir="${1:?usage: render-alerting.sh <source dir> <output dir>}"
output_dir="${2:?usage: render-alerting.sh <source dir> <output dir>}"
docs="${DOCS_URL:?DOCS_URL is not set}"
docs="${docs%/}"
# The value lands in a YAML scalar and in a link: no spaces, quotes, '#' or '$'.
if [[ ! "$docs" =~ ^https?://[A-Za-z0-9._~:/?@!\&()*+,\;=%-]+$ ]]; then
  echo "render-alerting: DOCS_URL '$DOCS_URL' is not an absolute http(s) URL" >&2
  exit 1
fi

mkdir -p "$output_dir"
# Files that left the source must leave Grafana's copy too.
find "$output_dir" -maxdepth 1 -type f \( -name '*.yml' -o -name '*.yaml' \) -delete
shopt -s nullglob
count=0
for file in "$source_dir"/*.yml "$source_dir"/*.yaml; do
  text="$(<"$file")"
  # quoted, so that no character of the URL is special to the replacement
  printf '%s\n' "${text//"\${DOCS_URL}"/"$docs"}" >"$output_dir/$(basename "$file")"
  count=$((count + 1))
done
((count)) || {
  echo "render-alerting: no YAML in $source_dir" >&2
  exit 1
}
echo "render-alerting: $count file(s), runbook links under $docs"
