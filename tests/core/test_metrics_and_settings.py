from __future__ import annotations

import pytest
from pydantic import Field

from finsa.errors import ConfigError
from finsa.metrics import Registry
from finsa.institutions import load_registry
from finsa.settings import Strict, load_config


def test_counter_renders_prometheus_text() -> None:
    reg = Registry()
    c = reg.counter("finsa_x_total", "X", ["reason"])
    c.inc(2, reason='a"b')
    assert 'finsa_x_total{reason="a\\"b"} 2.0' in reg.render()
    with pytest.raises(ValueError):
        reg.counter("finsa_bad", "no _total suffix")
    with pytest.raises(ValueError):
        c.inc(-1, reason="a")


class _Agent(Strict):
    port: int = Field(9000, ge=1, le=65535)
    name: str


def test_config_lists_every_problem_with_its_path(tmp_path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('port = 70000\ncolour = "red"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, _Agent)
    text = str(err.value)
    assert "3 problems" in text and "colour: unknown key" in text and "port:" in text and "name: Field required" in text


def test_config_syntax_error_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("port = = 1")
    with pytest.raises(ConfigError, match="not valid toml"):
        load_config(path, _Agent)


def test_registry_refuses_duplicates_and_bad_networks(tmp_path) -> None:
    path = tmp_path / "i.toml"
    path.write_text('[[institution]]\nid="a"\nname="A"\nsubsector="bank"\nnetworks=["10.0.0.0/33"]\n'
                    '[[institution]]\nid="a"\nname="B"\nsubsector="casino"\n')
    with pytest.raises(ConfigError) as err:
        load_registry(path)
    assert "institution.0.networks" in str(err.value) and "institution.1.subsector" in str(err.value)


def test_a_closed_output_pipe_ends_a_command_quietly(tmp_path) -> None:
    """`finsa query ... | head`: the reader leaves early; no traceback, exit 141 like Unix tools."""
    import subprocess
    import sys

    store = str(tmp_path / "store")
    subprocess.run([sys.executable, "-m", "finsa.app.cli", "storage", "migrate", "--data-dir", store], check=True,
                   capture_output=True, timeout=120)
    proc = subprocess.Popen([sys.executable, "-m", "finsa.app.cli", "query", "--data-dir", store,
                             "SELECT number FROM numbers(200000)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # like head after its lines
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and b"Traceback" not in err, err
