#!/bin/bash
# One Kafka node in KRaft mode (broker and controller). Renders server.properties from the
# environment and the compose secrets, formats the log directory once (with the SCRAM
# credentials of the inter-broker user `admin`), then starts Kafka.
#
# Listeners:
#   CONTROLLER :9094  SSL with client certificates (controllers authenticate each other by cert)
#   INTERNAL   :9091  SASL_SSL SCRAM-SHA-512, between brokers and for administration (user admin)
#   WORKERS    :9092  SASL_SSL SCRAM-SHA-512 on the backend network, for the stream workers (user
#                     finsa-worker); no listener is plaintext and no ANONYMOUS principal has rights
#   EXTERNAL   :9093  SASL_SSL SCRAM-SHA-512 for the institutions' collector agents
set -euo pipefail
: "${KAFKA_NODE_ID:?}" "${KAFKA_CLUSTER_ID:?}" "${KAFKA_HOST:?}" "${KAFKA_EXTERNAL_ADVERTISED:?}"
admin_password="$(tr -d '\n' < /run/secrets/kafka_admin_password)"
props=/tmp/server.properties
umask 077
cat > "$props" <<PROPS
process.roles=broker,controller
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=1@kafka-1:9094,2@kafka-2:9094,3@kafka-3:9094
listeners=CONTROLLER://:9094,INTERNAL://:9091,WORKERS://:9092,EXTERNAL://:9093
advertised.listeners=INTERNAL://${KAFKA_HOST}:9091,WORKERS://${KAFKA_HOST}:9092,EXTERNAL://${KAFKA_EXTERNAL_ADVERTISED}
listener.security.protocol.map=CONTROLLER:SSL,INTERNAL:SASL_SSL,WORKERS:SASL_SSL,EXTERNAL:SASL_SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.internal.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${admin_password}";
listener.name.workers.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.external.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=/run/secrets/kafka_node_pem
ssl.truststore.type=PEM
ssl.truststore.location=/run/secrets/kafka_ca_pem
ssl.endpoint.identification.algorithm=https
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([a-zA-Z0-9.-]+),.*$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:kafka-1;User:kafka-2;User:kafka-3
log.dirs=/var/lib/kafka/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
message.max.bytes=16777216
PROPS
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$KAFKA_CLUSTER_ID" -c "$props" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=${admin_password}]"
exec /opt/kafka/bin/kafka-server-start.sh "$props"
