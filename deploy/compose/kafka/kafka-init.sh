#!/bin/bash
# One-shot: the finsa topics, the collector agents' SCRAM users and the ACLs. Idempotent.
# Runs with the admin user over the INTERNAL listener.
set -euo pipefail
FLOW_PARTITIONS="${FLOW_PARTITIONS:-12}"
bootstrap=kafka-1:9091,kafka-2:9091,kafka-3:9091
admin_password="$(tr -d '\n' < /run/secrets/kafka_admin_password)"
umask 077
cat > /tmp/admin.properties <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${admin_password}";
ssl.truststore.type=PEM
ssl.truststore.location=/run/secrets/kafka_ca_pem
PROPS
bin=/opt/kafka/bin
topic() {  # name partitions
    "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --command-config /tmp/admin.properties \
        --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor 3 \
        --config min.insync.replicas=2 --config max.message.bytes=16777216
}
# The flow topic bounds how many workers share the work; everything else has one partition
# (one sector consumer sees every alert, in order).
topic finsa.flows.v2 "$FLOW_PARTITIONS"
for name in finsa.alerts.v1 finsa.heartbeats.v1 finsa.warnings.v1 finsa.campaigns.v1 \
            finsa.levels.v1 finsa.emergencies.v1 finsa.dlq.v1; do
    topic "$name" 1
done

acl() { "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config /tmp/admin.properties --add "$@"; }
scram_user() {  # name password-file
    "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config /tmp/admin.properties --alter \
        --add-config "SCRAM-SHA-512=[iterations=8192,password=$(tr -d '\n' < "$2")]" --entity-type users --entity-name "$1"
}
# Workers (WORKERS listener, SASL_SSL, user finsa-worker): the finsa topics, and alone Faust's
# internal and changelog topics (prefix finsa-worker) and their consumer group. No ANONYMOUS rights.
scram_user finsa-worker /run/secrets/kafka_worker_password
acl --allow-principal User:finsa-worker --operation Read --operation Write --operation Describe \
    --topic finsa. --resource-pattern-type prefixed
acl --allow-principal User:finsa-worker --operation All --topic finsa-worker --resource-pattern-type prefixed
acl --allow-principal User:finsa-worker --operation All --group finsa-worker --resource-pattern-type prefixed

# Collector agents: one SCRAM user per agent (agents/<user>.password secrets), write-only to the
# data topics (flows and ARP bindings, heartbeats, forwarded alerts); they create and read nothing.
for file in /run/secrets/agents/*.password; do
    [ -e "$file" ] || continue
    user="$(basename "$file" .password)"
    scram_user "$user" "$file"
    for t in finsa.flows.v2 finsa.heartbeats.v1 finsa.alerts.v1; do
        acl --allow-principal "User:$user" --operation Write --operation Describe --topic "$t"
    done
done
echo "finsa topics, worker and agent users and ACLs in place"
