"""Issue 15 at the deployment boundary (Kafka, ClickHouse server and Grafana cannot run here; their
generated configuration is checked instead).

Finding 14: the plaintext WORKERS listener granted User:ANONYMOUS all on ``finsa-worker*`` (any
container could plant a changelog record), agents had no ACL for ``finsa.alerts.v1``, the collector
had NET_ADMIN. Finding 12/13: web view and Grafana spoke plain HTTP; Grafana read every
institution through one user."""

from __future__ import annotations

import re

import yaml

from finsa import wire
from tests.deploy.helpers import COMPOSE, DEPLOY

KAFKA = COMPOSE / "kafka"


def _compose() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def _acls() -> list[str]:
    text = (KAFKA / "kafka-init.sh").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip().startswith("acl ")]


def test_no_listener_is_plaintext_and_no_anonymous_principal_has_rights() -> None:
    start = (KAFKA / "kafka-start.sh").read_text()
    protocols = dict(p.split(":") for p in re.search(r"^listener.security.protocol.map=(.+)$", start, re.M)
                     .group(1).split(","))
    assert protocols["WORKERS"] == "SASL_SSL" and "PLAINTEXT" not in protocols.values()
    assert "listener.name.workers.scram-sha-512.sasl.jaas.config" in start
    assert not [a for a in _acls() if "ANONYMOUS" in a]


def test_agents_may_write_the_data_topics_only_and_workers_alone_the_internal_ones() -> None:
    agent = [a for a in _acls() if '"User:$user"' in a]
    topics = {re.search(r"--topic (\S+)", a).group(1) for a in agent}
    loop = re.search(r"for t in ([^;]+); do\s+acl --allow-principal \"User:\$user\"",
                     (KAFKA / "kafka-init.sh").read_text())
    assert loop is not None
    assert set(loop.group(1).split()) == {wire.TOPICS[n] for n in ("flows", "heartbeats", "alerts")}
    assert topics == {'"$t"'} and all("--operation Write" in a and "Read" not in a and "Create" not in a
                                     and "All" not in a for a in agent)
    worker = [a for a in _acls() if "User:finsa-worker" in a]
    assert any("--topic finsa-worker --resource-pattern-type prefixed" in a for a in worker)
    assert any("--group finsa-worker" in a for a in worker)
    assert not [a for a in _acls() if "finsa-worker" in a and "User:finsa-worker" not in a]


def test_the_worker_logs_in_and_signs() -> None:
    worker = _compose()["services"]["finsa-worker"]
    command = " ".join(worker["command"])
    assert "--sasl-username finsa-worker" in command and "--ssl-ca-file" in command
    assert "--sasl-password-file /run/secrets/kafka_worker_password" in command
    targets = {s["target"] if isinstance(s, dict) else s for s in worker["secrets"]}
    assert "/run/secrets/batch-keys/_sector.key" in targets


def test_web_view_and_grafana_speak_tls_with_certificates_from_gen_secrets() -> None:
    services = _compose()["services"]
    secrets = _compose()["secrets"]
    gen = (COMPOSE / "gen-secrets.sh").read_text()
    hosts = re.search(r"^for host in ([^;]+); do$", gen, re.M).group(1).split()
    assert '"$host.pem"' in gen and '"$host.key"' in gen
    web = services["finsa-web"]["environment"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SERVER_PROTOCOL"] == "https"
    for path in (web["FINSA_WEB_TLS_CERT"], web["FINSA_WEB_TLS_KEY"],
                 grafana["GF_SERVER_CERT_FILE"], grafana["GF_SERVER_CERT_KEY"]):
        name = path.rsplit("/", 1)[1]
        assert name in secrets, path
        host, _, ext = secrets[name]["file"].split("/")[-1].rpartition(".")
        assert host in hosts and ext in ("pem", "key"), name  # made by gen-secrets.sh


def test_institutions_get_their_own_clickhouse_users_with_row_policies() -> None:
    tenants = _compose()["services"]["finsa-tenants"]
    command = " ".join(tenants["entrypoint"] + tenants.get("command", []))
    assert "storage tenants" in command and "--registry /etc/finsa/institutions.toml" in command
    users = (COMPOSE / "clickhouse" / "users.d" / "finsa-users.xml").read_text()
    assert "<access_management>1</access_management>" in users


def test_collectors_get_net_raw_only() -> None:
    assert _compose()["services"]["finsa-agent-example"]["cap_add"] == ["NET_RAW"]
    daemonset = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "collector-daemonset.yaml").read_text()) if d)
    for container in daemonset["spec"]["template"]["spec"]["containers"]:
        assert container["securityContext"]["capabilities"]["add"] == ["NET_RAW"]
    dockerfile = (DEPLOY / "docker" / "collector.Dockerfile").read_text()
    assert "setcap cap_net_raw+ep" in dockerfile and "cap_net_admin" not in dockerfile.split("setcap", 1)[1].split("\n")[0]
    live = (DEPLOY / "systemd" / "finsa-agent.service.d" / "live-capture.conf").read_text()
    assert "CAP_NET_ADMIN" not in live and "CAP_NET_RAW" in live
