"""`finsa flows` through finsa.app.cli.main: formats, profiles, options and errors."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from finsa.app.cli import main
from finsa.wire import FLOW
from tests.conftest import shared_data


def _capture(name: str = "mongodb.pcap"):
    return shared_data("flows/nfstream") / name


def test_csv_to_stdout(capsys) -> None:
    assert main(["flows", str(_capture())]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 8 and list(rows[0]) == list(FLOW.names)
    assert rows[0]["src_ip"].count(".") == 3  # addresses as text
    assert "27 packets, 8 flows" in err and "skipped: none" in err


def test_jsonl_with_options(tmp_path, capsys) -> None:
    out = tmp_path / "flows.jsonl"
    code = main(["flows", str(_capture("ssh.pcap")), "--format", "jsonl", "--output", str(out),
                 "--idle-timeout", "300", "--institution", "bank-a", "--sensor", "tap-1"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1  # a 300 s idle timeout does not split the 166 s silence
    assert rows[0]["institution_id"] == "bank-a" and rows[0]["sensor_id"] == "tap-1"
    assert rows[0]["ssh_banner"].startswith("SSH-")


def test_parquet_file(tmp_path) -> None:
    out = tmp_path / "flows.parquet"
    assert main(["flows", str(_capture("android.pcap")), "--format", "parquet", "-o", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 63 and table.column_names == list(FLOW.names)


@pytest.mark.parametrize("profile,expected", [("nfstream", 2), ("zeek", 1), ("agent", 4)])
def test_profiles(profile: str, expected: int, tmp_path, capsys) -> None:
    out = tmp_path / "f.csv"
    assert main(["flows", str(_capture("ssh.pcap")), "--profile", profile, "-o", str(out)]) == 0
    assert len(list(csv.DictReader(out.open()))) == expected


def test_active_timeout_option(tmp_path) -> None:
    out = tmp_path / "f.csv"
    assert main(["flows", str(_capture("dns_exfiltration.pcap")), "--active-timeout", "10", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) > 1 and {r["end_reason"] for r in rows} >= {"1"}


def test_skipped_summary(capsys) -> None:
    assert main(["flows", str(_capture("android.pcap")), "-o", "/dev/null"]) == 0
    assert "non_ip 25" in capsys.readouterr().err


def test_not_a_capture_is_exit_2_with_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, I am not a capture\n")
    assert main(["flows", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "not a pcap" in err
    assert main(["flows", str(tmp_path / "missing.pcap")]) == 2


def test_empty_capture_gives_a_header(tmp_path, capsys) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    assert main(["flows", str(path)]) == 0
    assert capsys.readouterr().out.strip() == ",".join(FLOW.names)


def test_csv_quotes_like_the_csv_module(tmp_path) -> None:
    """A text value with a comma, quote or line break is quoted exactly as Python's csv module
    quotes it (the compiled path writes batches that need none)."""
    batch = FLOW.make_batch({"src_ip": ["10.0.0.1", "2001:db8::1"], "dst_port": [80, 443],
                             "http_uri": ['/a,b?q="x"', "/plain"], "ssh_banner": ["SSH-2.0\r\nx", ""]})
    plain = FLOW.make_batch({"src_ip": ["192.0.2.7"], "http_host": ["example.org"]})
    _assert_written_as_the_csv_module_writes(tmp_path / "f.csv", [batch, plain])


def _assert_written_as_the_csv_module_writes(out, batches) -> None:
    """The batches written to ``out`` by ``finsa flows``' CSV writer are byte for byte what
    Python's csv module writes of their rows, header first."""
    from finsa.collectors.flows_command import _Writer

    writer = _Writer("csv", str(out))
    for batch in batches:
        writer.write(batch)
    writer.close()
    expected = io.StringIO()
    w = csv.DictWriter(expected, fieldnames=list(FLOW.names), lineterminator="\n")
    w.writeheader()
    w.writerows([row for batch in batches for row in batch.rows()])
    assert out.read_bytes() == expected.getvalue().encode()


def test_a_command_line_process_ends_with_everything_written(capsys) -> None:
    """From the process's own command line, ``finsa flows`` ends the process as soon as it
    returns (cli.ONE_SHOT): what it wrote to standard output and error is all there, and the
    exit code is the command's."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # standard output block-buffered
    run = "import sys; from finsa.app.cli import main; sys.argv[0] = 'finsa'; sys.exit(main())"
    capture = str(_capture("android.pcap"))
    done = subprocess.run([sys.executable, "-c", run, "flows", capture], capture_output=True, timeout=300, env=env)
    assert main(["flows", capture]) == 0
    out, err = capsys.readouterr()
    assert (done.returncode, done.stdout, done.stderr.decode()) == (0, out.encode(), err)
    failed = subprocess.run([sys.executable, "-c", run, "flows", capture + ".missing"], capture_output=True,
                            timeout=300, env=env)
    assert failed.returncode == 2 and b"finsa flows:" in failed.stderr


def test_csv_needs_no_pyarrow_even_for_values_that_need_quoting(tmp_path, monkeypatch) -> None:
    """A collector agent is installed without pyarrow (only Parquet needs it): CSV output, the
    compiled rows and the csv module's quoted batches alike, is written without importing it."""
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    quoted = FLOW.make_batch({"src_ip": ["10.0.0.1", "2001:db8::1"], "http_uri": ['/a,b', "/c"],
                              "first_seen_ms": [-1, 2**40], "dst_port": [80, 443]})
    plain = FLOW.make_batch({"src_ip": ["192.0.2.7"], "http_host": ["example.org"]})
    _assert_written_as_the_csv_module_writes(tmp_path / "f.csv", [quoted, plain])
