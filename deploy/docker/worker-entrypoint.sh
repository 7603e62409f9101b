#!/bin/sh
# finsa worker in a container: the ClickHouse password comes from a secret file, never from
# the image or the compose file. Every argument is passed on to `finsa worker`.
#   FINSA_CLICKHOUSE_URL            http://finsa_worker@clickhouse:8123 (no password in it)
#   FINSA_CLICKHOUSE_PASSWORD_FILE  e.g. /run/secrets/clickhouse_worker_password (hex characters)
set -eu
url="${FINSA_CLICKHOUSE_URL:?set FINSA_CLICKHOUSE_URL}"
if [ -n "${FINSA_CLICKHOUSE_PASSWORD_FILE:-}" ]; then
    password="$(tr -d '\n' < "$FINSA_CLICKHOUSE_PASSWORD_FILE")"
    scheme="${url%%://*}"
    rest="${url#*://}"
    url="${scheme}://${rest%%@*}:${password}@${rest#*@}"
fi
exec finsa worker --clickhouse-url "$url" "$@"
