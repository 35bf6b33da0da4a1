#!/bin/bash
# The compose stack's first step (service "check-secrets" in
# docker-compose.yml; every other service waits for it to succeed): refuse to
# start with the example settings.
#
#   check-secrets.sh /env.example
#
# Reads the variables named in .env.example from the environment (compose
# passes them in) and fails, naming each one, when:
#   - it still holds its .env.example placeholder (a value with "change-me"),
#     or is empty where a value is required;
#   - a secret (*_TOKEN, *_SECRET, *_PASSWORD, but not SMTP_PASSWORD, which
#     the mail provider sets) is shorter than 16 characters, or is the same
#     as another secret: each token grants something different;
#   - a value cannot work where it goes: INFLUX_READ_TOKEN is a bcrypt-hashed
#     password (72 bytes at most), POSTGRES_PASSWORD is embedded in
#     DATABASE_URL (URL-safe characters only), DOCS_URL, SERVICE_URL and GRAFANA_URL are
#     absolute http(s) URLs, ALERT_EMAIL_TO is an address,
#     ALERT_SLACK_WEBHOOK_URL an http(s) URL.
set -uo pipefail

example="${1:?usage: check-secrets.sh <path of .env.example>}"
# May be empty: a relay without authentication.
optional=" SMTP_USER SMTP_PASSWORD "
min_secret=16

problems=()
complain() { problems+=("$1: $2"); }

names=()
declare -A placeholder=()
while IFS= read -r line || [[ -n "$line" ]]; do
  [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
  name="${line%%=*}"
  name="${name#export }"
  names+=("$name")
  placeholder[$name]="${line#*=}"
done <"$example"

secrets=()
for name in "${names[@]}"; do
  value="${!name-}"
  example_value="${placeholder[$name]}"
  if [[ "$example_value" == *change-me* ]]; then
    if [[ "$value" == "$example_value" ]]; then
      complain "$name" "still the placeholder of .env.example"
      continue
    fi
    if [[ -z "$value" && "$optional" != *" $name "* ]]; then
      complain "$name" "empty"
      continue
    fi
  fi
  if [[ "$name" =~ _(TOKEN|SECRET|PASSWORD)$ && "$name" != SMTP_PASSWORD ]]; then
    if ((${#value} < min_secret)); then
      complain "$name" "shorter than $min_secret characters"
    fi
    secrets+=("$name")
  fi
done

# The same value under two names would let one holder act as the other.
for ((i = 0; i < ${#secrets[@]}; i++)); do
  for ((j = i + 1; j < ${#secrets[@]}; j++)); do
    a="${secrets[i]}" b="${secrets[j]}"
    if [[ -n "${!a-}" && "${!a}" == "${!b-}" ]]; then
      complain "$a" "the same value as $b"
    fi
  done
done

url='^https?://[A-Za-z0-9._~:/?@!&()*+,;=%-]+$'
check() { # name test description
  local name=$1 pattern=$2 what=$3
  local value="${!name-}"
  if [[ -n "$value" && ! "$value" =~ $pattern ]]; then
    complain "$name" "$what"
  fi
}
if [[ -n "${INFLUX_READ_TOKEN-}" ]] && ((${#INFLUX_READ_TOKEN} > 72)); then
  complain INFLUX_READ_TOKEN "longer than 72 characters (InfluxDB hashes it with bcrypt)"
fi
check POSTGRES_PASSWORD '^[A-Za-z0-9._~-]+$' "not URL-safe (it goes into DATABASE_URL)"
check DOCS_URL "$url" "not an absolute http(s) URL"
check SERVICE_URL "$url" "not an absolute http(s) URL"
check GRAFANA_URL "$url" "not an absolute http(s) URL"
check ALERT_SLACK_WEBHOOK_URL "$url" "not an absolute http(s) URL"
check ALERT_EMAIL_TO '^[^[:space:]@,;]+@[^[:space:]@,;]+([,;][^[:space:]@,;]+@[^[:space:]@,;]+)*$' \
  "not an e-mail address (or a comma-separated list of them)"

if ((${#problems[@]})); then
  for problem in "${problems[@]}"; do
    echo "check-secrets: $problem" >&2
  done
  echo "check-secrets: ${#problems[@]} setting(s) in .env to fix before the stack starts" \
    "(see .env.example)" >&2
  exit 1
fi
echo "check-secrets: ${#names[@]} settings checked"
