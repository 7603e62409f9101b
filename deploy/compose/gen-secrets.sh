#!/bin/bash
# Development secrets for deploy/compose: a private CA, one certificate per Kafka node, random
# passwords and keys. For production use the sector's CA and a secret store; the file names are
# what compose.yaml expects. Re-running keeps existing files (rotate by deleting one first).
set -euo pipefail
cd "$(dirname "$0")/secrets"
umask 077
new() { [ -e "$1" ] || openssl rand -hex "$2" > "$1"; }  # file, random bytes
for name in kafka_admin_password kafka_worker_password clickhouse_admin_password clickhouse_worker_password clickhouse_web_password \
            clickhouse_grafana_password clickhouse_cluster_secret grafana_admin_password; do
    new "$name" 24
done
mkdir -p agents batch-keys
new agents/bank-a-compose.password 24
new batch-keys/bank-a.key 32
new batch-keys/_sector.key 32      # the workers sign the alerts they publish with it
new bank-a-pseudonym.key 32
if [ ! -e ca.pem ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -keyout ca.key -out ca.pem -days 825 -subj "/CN=finsa dev CA/O=finsa"
fi
for n in 1 2 3; do
    [ -e "kafka-$n.pem" ] && continue
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "kafka-$n.key"
    openssl req -new -key "kafka-$n.key" -subj "/CN=kafka-$n/O=finsa" -out "kafka-$n.csr"
    printf 'subjectAltName=DNS:kafka-%s,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' "$n" > "kafka-$n.ext"
    openssl x509 -req -in "kafka-$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
        -extfile "kafka-$n.ext" -out "kafka-$n.crt"
    cat "kafka-$n.key" "kafka-$n.crt" ca.pem > "kafka-$n.pem"      # PEM keystore: key + chain
    rm -f "kafka-$n.csr" "kafka-$n.ext" "kafka-$n.key" "kafka-$n.crt"
done
# TLS for the web view and Grafana (the names their services mount).
for host in finsa-web grafana; do
    [ -e "$host.pem" ] && continue
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$host.key"
    openssl req -new -key "$host.key" -subj "/CN=$host/O=finsa" -out "$host.csr"
    printf 'subjectAltName=DNS:%s,DNS:localhost,DNS:%s\nextendedKeyUsage=serverAuth\n' \
        "$host" "${FINSA_PUBLIC_HOST:-localhost}" > "$host.ext"
    openssl x509 -req -in "$host.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
        -extfile "$host.ext" -out "$host.pem"
    rm -f "$host.csr" "$host.ext"
done
# The containers run as other users (kafka 1000, clickhouse 101, grafana 472, finsa 10001):
# files readable, the directory closed to other host users.
chmod 0700 .
find . -type f ! -name ca.key ! -name .gitignore -exec chmod 0644 {} +
echo "secrets written to $(pwd)"
