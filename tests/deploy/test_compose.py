"""deploy/compose: valid against the Compose specification, accepted by Docker Compose itself,
and consistent with finsa (topics, partitions, cluster layout, provisioning, secrets)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import jsonschema
import yaml

from finsa import wire
from finsa.collectors.agent.config import load_agent_config
from tests.conftest import REPO, need_tool
from tests.deploy.helpers import COMPOSE, DEPLOY, SCHEMAS, docker_compose_binary

COMPOSE_FILE = COMPOSE / "compose.yaml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _services(prefix: str) -> list[str]:
    return sorted(name for name in _compose()["services"] if name.startswith(prefix))


def test_valid_against_the_compose_spec_schema() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(_compose())


def test_the_schema_catches_a_bad_key() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    bad = _compose()
    bad["services"]["finsa-worker"]["replica"] = 3
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(bad))
    assert errors and "replica" in errors[0].message


def test_docker_compose_config_accepts_it(tmp_path) -> None:
    """Docker Compose v2 (the binary, no engine needed) loads, interpolates and checks the
    project, with the secrets that gen-secrets.sh writes."""
    need_tool("openssl")
    binary = docker_compose_binary()
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("secrets"))
    (copy / "compose" / "secrets").mkdir()
    done = subprocess.run(["bash", str(copy / "compose" / "gen-secrets.sh")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for profile in ([], ["--profile", "example"]):
        done = subprocess.run([binary, "-f", str(copy / "compose" / "compose.yaml"), *profile, "config", "--quiet"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    done = subprocess.run(["openssl", "verify", "-CAfile", str(copy / "compose/secrets/ca.pem"),
                           str(copy / "compose/secrets/kafka-2.pem")], capture_output=True, text=True)
    assert done.returncode == 0 and "OK" in done.stdout


def test_topics_created_are_the_wire_topics_and_bound_the_workers() -> None:
    init = (COMPOSE / "kafka" / "kafka-init.sh").read_text()
    created = set(re.findall(r"\bfinsa\.[a-z]+\.v\d+\b", init.split("acl()")[0]))
    assert created == set(wire.TOPICS.values())
    compose = _compose()
    partitions = int(compose["services"]["kafka-init"]["environment"]["FLOW_PARTITIONS"])
    worker = compose["services"]["finsa-worker"]
    assert worker["deploy"]["replicas"] <= partitions
    assert worker["command"][worker["command"].index("--partitions") + 1] == str(partitions)
    assert "--broker" in worker["command"] and ":9092" in worker["command"][1]  # the WORKERS listener


def test_kafka_nodes_match_the_quorum_and_listeners() -> None:
    start = (COMPOSE / "kafka" / "kafka-start.sh").read_text()
    voters = re.search(r"controller\.quorum\.voters=(\S+)", start).group(1)
    assert voters == ",".join(f"{n}@kafka-{n}:9094" for n in (1, 2, 3))
    assert [s for s in _services("kafka-") if s != "kafka-init"] == ["kafka-1", "kafka-2", "kafka-3"]
    protocols = dict(p.split(":") for p in re.search(r"listener\.security\.protocol\.map=(\S+)", start).group(1).split(","))
    assert protocols == {"CONTROLLER": "SSL", "INTERNAL": "SASL_SSL", "WORKERS": "SASL_SSL", "EXTERNAL": "SASL_SSL"}  # issue 15: none plaintext
    assert "allow.everyone.if.no.acl.found=false" in start and "sasl.enabled.mechanisms=SCRAM-SHA-512" in start
    for n in (1, 2, 3):
        ports = _compose()["services"][f"kafka-{n}"]["ports"]
        assert ports == [f"{19092 + n}:9093"]  # only the EXTERNAL (SASL_SSL) listener is published


def test_clickhouse_cluster_is_two_shards_of_two_replicas_on_three_keepers() -> None:
    config = ET.parse(COMPOSE / "clickhouse" / "config.d" / "finsa-cluster.xml").getroot()
    shards = config.findall("./remote_servers/finsa/shard")
    hosts = [[r.findtext("host") for r in shard.findall("replica")] for shard in shards]
    assert hosts == [["clickhouse-s1r1", "clickhouse-s1r2"], ["clickhouse-s2r1", "clickhouse-s2r2"]]
    assert all(shard.findtext("internal_replication") == "true" for shard in shards)
    assert sorted(n.findtext("host") for n in config.findall("./zookeeper/node")) == _services("keeper-")
    services = _compose()["services"]
    for s, shard in enumerate(hosts, start=1):
        for host in shard:
            env = services[host]["environment"]
            assert env == {"FINSA_SHARD": f"0{s}", "FINSA_REPLICA": host}  # replica unique in the cluster
    keeper = ET.parse(COMPOSE / "keeper" / "keeper.xml").getroot()
    raft = [s.findtext("hostname") for s in keeper.findall("./keeper_server/raft_configuration/server")]
    assert raft == _services("keeper-")


def test_clickhouse_users_get_their_passwords_from_secrets() -> None:
    users = ET.parse(COMPOSE / "clickhouse" / "users.d" / "finsa-users.xml").getroot()
    wanted = {u.find("password").get("from_env") for u in users.find("users") if u.find("password") is not None}
    script = (COMPOSE / "clickhouse" / "with-secrets.sh").read_text()
    exported = set(re.search(r"^export (.+)$", script, re.M).group(1).split())
    assert wanted | {"FINSA_CLUSTER_SECRET"} == exported
    assert users.find("users/default").get("remove") == "remove"
    mounted = set(_compose()["services"]["clickhouse-s1r1"]["secrets"])
    assert set(re.findall(r"read_secret (\w+)", script)) <= mounted
    writer = users.find("profiles/finsa_writer")
    assert writer.findtext("distributed_foreground_insert") == "1"


def test_grafana_gets_finsa_provisioning_with_credentials() -> None:
    ours = yaml.safe_load((COMPOSE / "grafana" / "datasources" / "finsa-clickhouse.yaml").read_text())
    upstream = yaml.safe_load((DEPLOY / "grafana" / "datasources" / "finsa-clickhouse.yaml").read_text())
    ch = ours["datasources"][0]
    assert ch.pop("secureJsonData") == {"password": "$__file{/run/secrets/clickhouse_grafana_password}"}
    assert ch["jsonData"].pop("username") == "grafana"
    upstream["datasources"][0]["jsonData"].pop("username")
    assert ours == upstream
    grafana = _compose()["services"]["grafana"]
    for volume in grafana["volumes"][:3]:
        source = (COMPOSE / volume.split(":")[0]).resolve()
        assert source.is_dir() and any(source.iterdir()), volume
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]


def test_finsa_services_are_locked_down() -> None:
    services = _compose()["services"]
    for name in ("finsa-worker", "finsa-web", "finsa-migrate", "finsa-agent-example"):
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
    assert services["finsa-agent-example"]["cap_add"] == ["NET_RAW"]
    assert _compose()["networks"]["backend"]["internal"] is True


def test_example_agent_config_is_valid(tmp_path) -> None:
    text = (COMPOSE / "agent" / "agent.toml").read_text()
    for name, content in (("pseudonym.key", "ab" * 32), ("batch-signing.key", "cd" * 32),
                          ("broker.password", "pw"), ("ca.pem", "-----BEGIN CERTIFICATE-----\n")):
        (tmp_path / name).write_text(content)
        text = text.replace(f"/run/secrets/{name}", str(tmp_path / name))
    text = text.replace("/var/lib/finsa/spool", str(tmp_path / "spool"))
    (tmp_path / "bank-a.pcap").write_bytes(b"")
    text = text.replace("/captures/", f"{tmp_path}/")
    path = tmp_path / "agent.toml"
    path.write_text(text)
    config = load_agent_config(path)
    assert config.institution_id == "bank-a" and config.broker.security_protocol == "SASL_SSL"


def test_scripts_parse() -> None:
    for script in sorted(COMPOSE.rglob("*.sh")) + sorted((REPO / "deploy" / "docker").glob("*.sh")):
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script}: {done.stderr}"
