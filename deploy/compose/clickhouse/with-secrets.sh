#!/bin/bash
# Exports the ClickHouse passwords and the cluster secret from the compose secrets into the
# environment the server's config reads (from_env), then runs the image's entry point.
set -euo pipefail
read_secret() { tr -d '\n' < "/run/secrets/$1"; }
FINSA_CH_ADMIN_PASSWORD="$(read_secret clickhouse_admin_password)"
FINSA_CH_WORKER_PASSWORD="$(read_secret clickhouse_worker_password)"
FINSA_CH_WEB_PASSWORD="$(read_secret clickhouse_web_password)"
FINSA_CH_GRAFANA_PASSWORD="$(read_secret clickhouse_grafana_password)"
FINSA_CLUSTER_SECRET="$(read_secret clickhouse_cluster_secret)"
export FINSA_CH_ADMIN_PASSWORD FINSA_CH_WORKER_PASSWORD FINSA_CH_WEB_PASSWORD FINSA_CH_GRAFANA_PASSWORD FINSA_CLUSTER_SECRET
exec /entrypoint.sh "$@"
