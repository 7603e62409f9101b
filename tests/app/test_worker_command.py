"""`finsa worker` turns its credential flags into Faust credentials, never reading a password from argv."""

from __future__ import annotations

import argparse
import ssl
import subprocess

import faust
import pytest

from finsa.app.worker import add_arguments, broker_credentials


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--broker", "b:9093", "--data-dir", "/tmp/x", *argv])


def test_plaintext_without_flags() -> None:
    assert broker_credentials(_args()) is None


def test_scram_over_tls(tmp_path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    ca = tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(ca), "-days", "1", "-subj", "/CN=test-ca"], check=True, capture_output=True)
    creds = broker_credentials(_args("--sasl-username", "worker", "--sasl-password-file", str(secret),
                                     "--sasl-mechanism", "SCRAM-SHA-256", "--ssl-ca-file", str(ca)))
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "worker" and creds.password == "s3cret"
    assert isinstance(creds.ssl_context, ssl.SSLContext) and str(creds.protocol).endswith("SASL_SSL")


def test_username_without_password_file_is_refused() -> None:
    with pytest.raises(SystemExit, match="password-file"):
        broker_credentials(_args("--sasl-username", "worker"))


def test_clickhouse_password_comes_from_a_file(tmp_path) -> None:
    from finsa.app.worker import clickhouse_url

    secret = tmp_path / "ch"
    secret.write_text("p@ss/word\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--broker", "b:9092", "--clickhouse-url", "http://finsa@ch1:8123",
                              "--clickhouse-password-file", str(secret)])
    assert clickhouse_url(args) == "http://finsa:p%40ss%2Fword@ch1:8123"


def test_an_inventory_without_a_registry_is_refused(tmp_path, capsys) -> None:
    from finsa.app.worker import main

    assert main(_args("--inventory", str(tmp_path / "inventory.toml"))) == 2
    assert "inventory: needs registry" in capsys.readouterr().err


def test_the_sector_picture_reads_the_inventory_against_the_registry(tmp_path) -> None:
    from finsa.errors import ConfigError
    from finsa.sector.picture import SectorPicture

    (tmp_path / "reg.toml").write_text('[[institution]]\nid = "bank-a"\nname = "A"\nsubsector = "bank"\n')
    asset = '[[asset]]\ninstitution = "{}"\nservice = "portal"\nkind = "online_banking"\naddress = "192.0.2.10"\n'
    (tmp_path / "inv.toml").write_text(asset.format("bank-a"))
    picture = SectorPicture.from_files(tmp_path / "reg.toml", tmp_path / "inv.toml")
    assert picture.enricher.assets.exposed_kinds("bank-a") == {"online_banking"}
    (tmp_path / "inv.toml").write_text(asset.format("bank-z"))
    with pytest.raises(ConfigError, match="unknown institution bank-z"):
        SectorPicture.from_files(tmp_path / "reg.toml", tmp_path / "inv.toml")


def test_check_lists_every_problem_with_field_and_reason(tmp_path, capsys) -> None:
    from finsa.app.worker import main

    (tmp_path / "reg.toml").write_text('[[institution]]\nid = "bank-a"\nname = "A"\nsubsector = "bank"\ncolour = 1\n')
    (tmp_path / "det.toml").write_text("[detectors.nosuch]\n")
    args = _args("--check", "--registry", str(tmp_path / "reg.toml"), "--detectors", str(tmp_path / "det.toml"),
                 "--web-port", "70000", "--batch-keys", str(tmp_path / "missing"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "web_port: Input should be less than or equal to 65535" in err  # values first: files unread yet
    args.web_port = 0
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "registry: " in err and "colour" in err
    assert "detectors: detectors.nosuch: unknown key" in err
    assert f"batch_keys: {tmp_path / 'missing'}: not a readable directory" in err


def test_check_prints_the_effective_config_with_the_password_masked(tmp_path, capsys) -> None:
    import json

    from finsa.app.worker import main

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--broker", "k1:9092,k2:9092", "--clickhouse-url", "http://w:s3cret@ch1:8123", "--check"])
    assert main(args) == 0
    out = capsys.readouterr().out
    view = json.loads(out)
    assert view["clickhouse_url"] == "http://w:**********@ch1:8123" and "s3cret" not in out
    assert view["drain_timeout"] == 20.0 and view["broker"] == "k1:9092,k2:9092"


def test_check_validates_the_soc_flags(tmp_path, capsys) -> None:
    from finsa.app.worker import main

    (tmp_path / "notify.toml").write_text("[outbox]\npath = 'outbox.db'\ncolour = 1\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--broker", "b:9093", "--clickhouse-url", "http://ch1:8123", "--check",
                              "--notify", str(tmp_path / "notify.toml"), "--clickhouse-http", "8123"])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "notify: needs registry" in err and "notify: outbox.colour: unknown key" in err
    assert "clickhouse_http: needs data_dir" in err
