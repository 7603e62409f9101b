from __future__ import annotations

import argparse
import json
import os
import threading

import pytest

from finsa.collectors import collect_command
from finsa.collectors.agent.agent import RELOADS, Agent
from finsa.collectors.agent.config import load_agent_config, masked_view
from finsa.errors import ConfigError
from tests.collectors.agent.agent_helpers import wait_for, write_config


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    collect_command.add_arguments(parser)
    argv = []
    for k, v in kw.items():
        argv += [f"--{k}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def test_every_problem_is_listed_with_its_path(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('''institution_id = "bank a"
sensor_id = "s1"
colour = "red"
internal_networks = ["10.0.0.1/8"]
heartbeat_interval_s = 0
[sources]
pcap_files = ["/no/such.pcap"]
[broker]
bootstrap = "kafka.example"
sasl_password = "inline"
typo = 1
[spool]
directory = "/tmp/x"
max_batches = 0
''')
    with pytest.raises(ConfigError) as err:
        load_agent_config(path)
    where = sorted(p.split(":")[0] for p in err.value.problems)
    assert where == ["broker.bootstrap", "broker.sasl_password", "broker.typo", "colour", "heartbeat_interval_s",
                     "institution_id", "internal_networks", "sources.pcap_files", "spool.max_batches"]
    assert "inline" not in str(err.value)


def test_cross_field_rules(tmp_path) -> None:
    base = write_config(tmp_path, "127.0.0.1:9092").read_text()
    cases = {
        "SASL needs": base.replace('partitions = 2', 'partitions = 2\nsecurity_protocol = "SASL_SSL"'),
        "give pseudonymisation_key_file": "\n".join(line for line in base.splitlines() if not line.startswith("pseudonym")),
        "sasl_password_env": base.replace('partitions = 2', 'partitions = 2\nsasl_password_env = "FINSA_NOPE_XYZ"'),
        "give at least one": base.replace("pcap_files", "interfaces = []\n#"),
        "is one address: a pseudonym keeps the network": base.replace(
            "internal_networks = [", 'internal_networks = ["10.9.8.7/32", '),
    }
    for expected, text in cases.items():
        path = tmp_path / "case.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=expected):
            load_agent_config(path)


def test_password_from_a_file_or_the_environment_is_masked(tmp_path, monkeypatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    base = write_config(tmp_path, "127.0.0.1:9092").read_text()
    sasl = 'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "bank-a"\n'
    path = tmp_path / "agent.toml"
    path.write_text(base.replace("partitions = 2", f'partitions = 2\n{sasl}sasl_password_file = "{secret}"'))
    config = load_agent_config(path)
    assert config.broker.client_settings()["sasl.password"] == "hunter2"
    assert "hunter2" not in json.dumps(masked_view(config)) and "hunter2" not in repr(config)
    monkeypatch.setenv("FINSA_TEST_PW", "from-env")
    path.write_text(base.replace("partitions = 2", f'partitions = 2\n{sasl}sasl_password_env = "FINSA_TEST_PW"'))
    assert load_agent_config(path).broker.client_settings()["sasl.password"] == "from-env"


def test_credentials_directory_is_expanded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    path = write_config(tmp_path, "127.0.0.1:9092")
    path.write_text(path.read_text().replace(str(tmp_path / "pseudonym.key"), "$CREDENTIALS_DIRECTORY/pseudonym.key"))
    assert load_agent_config(path).pseudonymisation_key_file == tmp_path / "pseudonym.key"


def test_check_prints_the_effective_config_and_exits_0_or_2(tmp_path, capsys) -> None:
    path = write_config(tmp_path, "127.0.0.1:9092")
    assert collect_command.main(_args(config=path, check=True)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["institution_id"] == "bank-a" and shown["spool"]["max_batches"] == 100_000
    assert "5a" * 32 not in json.dumps(shown)
    path.write_text(path.read_text() + "bogus = 1\n")
    assert collect_command.main(_args(config=path, check=True)) == 2
    assert "bogus: unknown key" in capsys.readouterr().err


def test_flag_form_still_asks_for_a_broker(capsys) -> None:
    assert collect_command.main(_args()) == 2
    assert collect_command.main(_args(check=True)) == 2


def test_invalid_reload_keeps_the_running_config_and_a_valid_one_is_swapped_in(tmp_path) -> None:
    path = write_config(tmp_path, "127.0.0.1:1")
    agent = Agent(load_agent_config(path), path)
    good = path.read_text()
    refused = RELOADS.value(outcome="refused")
    path.write_text(good.replace("heartbeat_interval_s = 0.3", "heartbeat_interval_s = -1") + "nope = 1\n")
    assert not agent.reload()
    assert RELOADS.value(outcome="refused") == refused + 1
    assert agent.config.heartbeat_interval_s == 0.3
    path.write_text(good.replace("heartbeat_interval_s = 0.3", "heartbeat_interval_s = 7").replace(
        '"10.0.0.0/8", ', ""))
    assert agent.reload()
    assert agent.config.heartbeat_interval_s == 7 and agent.config.internal_networks == ["fd00::/8"]
    assert agent._pseudo.networks == ("fd00::/8",)


@pytest.mark.parametrize("via_signal", [True, False])
def test_run_reloads_on_request_or_when_the_file_changed(tmp_path, via_signal: bool) -> None:
    path = write_config(tmp_path, "127.0.0.1:1")
    os.utime(path, (1000, 1000))
    agent = Agent(load_agent_config(path), path)
    reload_requested = threading.Event()
    path.write_text(path.read_text().replace("heartbeat_interval_s = 0.3", "heartbeat_interval_s = 9"))
    if via_signal:  # what the SIGHUP handler does; the file's mtime looks unchanged
        os.utime(path, (1000, 1000))
        reload_requested.set()
    else:
        os.utime(path, (2000, 2000))
        assert agent.config_changed()
    done = threading.Thread(target=agent.run, args=(reload_requested, 0.05, False))
    done.start()
    try:
        assert wait_for(lambda: agent.config.heartbeat_interval_s == 9)
    finally:
        agent.stop_event.set()
        done.join(10)
