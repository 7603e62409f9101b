"""LogFollower: every line exactly once across restarts, rename and copytruncate rotations (while
running and while the agent was away), Zeek headers on resume, a refused positions file."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from finsa.collectors.idslogs.rotating_files import LogFollower
from finsa.collectors.idslogs.read_positions import LogStateError, PositionStore
from finsa.collectors.idslogs.growing_file import COPIES_READ, LINES_READ, RESUMES, ROTATIONS


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _append(path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def _lines(start: int, stop: int) -> str:
    return "".join(f'{{"n": {i}, "pad": "{"x" * 40}"}}\n' for i in range(start, stop))


def _numbers(pairs) -> list[int]:
    return [json.loads(line)["n"] for _, lines in pairs for line in lines if line.startswith("{")]


def _follower(tmp_path, files, clock=None, from_start=True, **kw) -> LogFollower:
    store = PositionStore(tmp_path / "state" / "log-positions-test.json")
    return LogFollower(lambda: [f for f in files if f.exists()], "test", store, from_start=from_start,
                       clock=clock or Clock(), **kw).open()


def _drain(follower: LogFollower, rounds: int = 3) -> list[int]:
    out = []
    for _ in range(rounds):
        follower.scan()
        out += _numbers(follower.read())
    return out


def test_stop_mid_file_append_restart_reads_every_line_once(tmp_path) -> None:
    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 50) + '{"n": 50, "pa')  # a line still being written
    before = RESUMES.value(source="test", outcome="resumed")
    follower = _follower(tmp_path, [eve])
    got = _drain(follower)
    follower.close()
    _append(eve, 'd": ""}\n' + _lines(51, 80))
    follower = _follower(tmp_path, [eve])
    got += _drain(follower)
    follower.close()
    assert got == list(range(80))
    assert RESUMES.value(source="test", outcome="resumed") - before == 1
    follower = _follower(tmp_path, [eve])  # nothing new: nothing again
    assert _drain(follower) == []


def test_lines_and_bytes_are_counted(tmp_path) -> None:
    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 10))
    before = LINES_READ.value(source="test")
    follower = _follower(tmp_path, [eve])
    assert len(_drain(follower)) == 10
    assert LINES_READ.value(source="test") - before == 10


def test_rename_rotation_while_running(tmp_path) -> None:
    eve, clock = tmp_path / "eve.json", Clock()
    _append(eve, _lines(0, 10))
    follower = _follower(tmp_path, [eve], clock=clock)
    got = _drain(follower)
    _append(eve, _lines(10, 15))
    os.rename(eve, tmp_path / "eve.json.1")
    _append(eve, _lines(15, 20))
    before = ROTATIONS.value(reason="rotated")
    got += _drain(follower)
    clock.now += 10  # past rotate_wait_s: the renamed file is closed
    got += _drain(follower)
    assert sorted(got) == list(range(20)) and len(follower.follows) == 1
    assert ROTATIONS.value(reason="rotated") - before == 1
    _append(eve, _lines(20, 22))
    follower.close()
    follower = _follower(tmp_path, [eve])
    assert _drain(follower) == [20, 21]


def test_rename_rotation_while_away_finishes_the_renamed_file(tmp_path) -> None:
    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 10))
    follower = _follower(tmp_path, [eve])
    got = _drain(follower)
    follower.close()
    _append(eve, _lines(10, 15))  # written after the stop, before the rotation
    os.rename(eve, tmp_path / "eve.json.1")
    _append(eve, _lines(15, 20))
    before = RESUMES.value(source="test", outcome="rotated_copy_read")
    follower = _follower(tmp_path, [eve])
    got += _drain(follower)
    assert got == list(range(20))
    assert RESUMES.value(source="test", outcome="rotated_copy_read") - before == 1


def test_copytruncate_while_running_reads_the_unread_end_from_the_copy(tmp_path) -> None:
    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 10))
    follower = _follower(tmp_path, [eve])
    got = _drain(follower)
    follower.commit()
    _append(eve, _lines(10, 13))  # not read yet when logrotate copies and truncates
    shutil.copy(eve, tmp_path / "eve.json.1")
    os.truncate(eve, 0)
    _append(eve, _lines(13, 16))
    before = (ROTATIONS.value(reason="truncated"), COPIES_READ.value(source="test"))
    got += _drain(follower)
    assert got == list(range(16))
    assert (ROTATIONS.value(reason="truncated"), COPIES_READ.value(source="test")) == (before[0] + 1, before[1] + 1)


def test_copytruncate_noticed_by_fingerprint_when_the_new_content_is_longer(tmp_path) -> None:
    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 3))
    follower = _follower(tmp_path, [eve])
    got = _drain(follower)
    follower.commit()  # fingerprints the first bytes
    shutil.copy(eve, tmp_path / "eve.json.1")
    os.truncate(eve, 0)
    _append(eve, _lines(100, 120))  # already past the old position at the next poll
    got += _drain(follower)
    assert got == [0, 1, 2] + list(range(100, 120))


def test_copytruncate_while_away(tmp_path) -> None:
    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 10))
    follower = _follower(tmp_path, [eve])
    got = _drain(follower)
    follower.close()
    _append(eve, _lines(10, 12))
    shutil.copy(eve, tmp_path / "eve.json.1")
    os.truncate(eve, 0)
    _append(eve, _lines(12, 40))
    follower = _follower(tmp_path, [eve])
    got += _drain(follower)
    assert got == list(range(40))


def test_directory_rotation_does_not_read_the_renamed_file_twice(tmp_path) -> None:
    logs, clock = tmp_path / "logs", Clock()
    logs.mkdir()
    conn = logs / "conn.log"
    _append(conn, _lines(0, 5))
    listing = lambda: sorted(logs.iterdir())  # noqa: E731 - every file, the rotated one included
    store = PositionStore(tmp_path / "positions.json")
    follower = LogFollower(listing, "test", store, from_start=True, clock=clock).open()
    got = _drain(follower)
    os.rename(conn, logs / "conn.2025-06-01-10-00-00.log")
    _append(conn, _lines(5, 8))
    got += _drain(follower)
    clock.now += 10
    got += _drain(follower)
    follower.close()
    follower = LogFollower(listing, "test", store, from_start=True).open()
    got += _drain(follower)
    assert sorted(got) == list(range(8)) and len(got) == 8


def test_first_run_from_the_end_then_new_files_from_their_start(tmp_path) -> None:
    eve, other = tmp_path / "eve.json", tmp_path / "eve2.json"
    _append(eve, _lines(0, 5))
    follower = _follower(tmp_path, [eve, other], from_start=False)
    assert _drain(follower) == []
    _append(other, _lines(5, 7))  # appears while running: read from its start
    _append(eve, _lines(7, 8))
    assert sorted(_drain(follower)) == [5, 6, 7]
    follower.close()
    _append(eve, _lines(8, 9))
    follower = _follower(tmp_path, [eve, other], from_start=False)  # not a first run: resumes
    assert _drain(follower) == [8]


def test_quiet_files_are_closed_and_reopened_when_they_grow(tmp_path) -> None:
    eve, clock = tmp_path / "eve.json", Clock()
    _append(eve, _lines(0, 3))
    follower = _follower(tmp_path, [eve], clock=clock, inactive_s=60)
    assert _drain(follower) == [0, 1, 2]
    clock.now += 61
    follower.read()
    assert follower.follows == []
    assert _drain(follower) == []
    _append(eve, _lines(3, 5))
    assert _drain(follower) == [3, 4]


def test_zeek_tsv_resumed_mid_file_gets_its_header_again(tmp_path) -> None:
    from finsa.collectors.idslogs.zeek import ZeekLogParser

    header = "#separator \\x09\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n"
    rows = [f"1.{i}\tC{i}\t10.0.0.1\t{4000 + i}\t10.0.0.2\t80\ttcp\n" for i in range(6)]
    conn = tmp_path / "conn.log"
    _append(conn, header + "".join(rows[:3]))

    def parse(follower):
        parser = ZeekLogParser("bank-a", "tap1", name="conn.log")
        for _ in range(2):
            for _tail, lines in follower.read():
                for line in lines:
                    parser.feed(line)
        flows, _ = parser.drain()
        assert parser.skipped == 0
        return [] if flows is None else flows.columns["src_port"].tolist()

    store = PositionStore(tmp_path / "positions.json")
    follower = LogFollower(lambda: [conn], "zeek-test", store, from_start=True, header_prefix="#").open()
    got = parse(follower)
    follower.close()
    _append(conn, "".join(rows[3:]))
    follower = LogFollower(lambda: [conn], "zeek-test", store, from_start=True, header_prefix="#").open()
    got += parse(follower)
    assert got == [4000 + i for i in range(6)]


@pytest.mark.parametrize("body", ["{not json", '{"version": 9, "files": []}',
                                  '{"version": 1, "files": [{"path": "x", "dev": -1}]}'])
def test_a_corrupt_positions_file_is_refused_and_left_alone(tmp_path, body) -> None:
    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 3))
    state = tmp_path / "state" / "log-positions-test.json"
    state.parent.mkdir()
    state.write_text(body)
    with pytest.raises(LogStateError, match="refused.*move it away"):
        _follower(tmp_path, [eve])
    assert state.read_text() == body
    state.rename(tmp_path / "moved-away.json")
    assert _drain(_follower(tmp_path, [eve])) == [0, 1, 2]


def test_positions_file_is_replaced_atomically(tmp_path) -> None:
    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 3))
    follower = _follower(tmp_path, [eve])
    _drain(follower)
    assert follower.commit() and not follower.commit()  # unchanged: not written again
    saved = json.loads((tmp_path / "state" / "log-positions-test.json").read_text())
    assert saved["version"] == 1 and saved["files"][0]["offset"] == eve.stat().st_size
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["log-positions-test.json"]


def test_agent_log_source_refuses_a_corrupt_positions_file_and_resumes_a_good_one(tmp_path) -> None:
    from finsa.collectors.agent.sources import FAILURES, LogSource, log_positions_path

    eve = tmp_path / "eve.json"
    _append(eve, "".join(json.dumps({"timestamp": f"2025-06-01T10:00:0{i}.000000+0000", "flow_id": i,
                                     "event_type": "tls", "src_ip": "10.0.0.1", "src_port": 40000 + i,
                                     "dest_ip": "192.0.2.7", "dest_port": 443, "proto": "TCP",
                                     "tls": {"sni": "bank.example"}}) + "\n" for i in range(4)))
    state = tmp_path / "state"
    state.mkdir()
    log_positions_path(state, "suricata").write_text("{broken")
    batches: list = []

    def run() -> None:
        LogSource("suricata", [eve], "bank-a", "tap1", batches.append, from_start=True, follow=False,
                  state_dir=state).start().join(10)

    before = FAILURES.value(kind="suricata")
    run()
    assert batches == [] and FAILURES.value(kind="suricata") - before == 1
    log_positions_path(state, "suricata").unlink()
    run()
    run()  # the second run resumes at the end: nothing twice
    assert sum(len(b) for b in batches) == 4


def test_real_zeek_conn_log_split_by_a_restart_gives_every_connection_once(tmp_path) -> None:
    from finsa.collectors.agent.sources import LogSource
    from finsa.collectors.idslogs.zeek import stable_id
    from finsa.wire import RecordBatch
    from tests.conftest import shared_data

    text = (shared_data("flows/zeek") / "wikipedia.zeek-conn.log").read_text()
    uids = [line.split("\t")[1] for line in text.splitlines() if line and not line.startswith("#")]
    cut = text.index("\n", len(text) // 2) + 1
    logs, state = tmp_path / "zeek", tmp_path / "state"
    logs.mkdir()
    _append(logs / "conn.log", text[:cut] + text[cut:cut + 7])  # stops inside a row
    batches: list = []

    def run(from_start: bool) -> None:
        LogSource("zeek", [logs], "bank-a", "tap1", batches.append, from_start=from_start, follow=False,
                  state_dir=state).start().join(10)

    run(True)
    _append(logs / "conn.log", text[cut + 7:])
    run(False)
    flows = RecordBatch.concat(batches)
    assert flows.columns["flow_id"].tolist() == [stable_id(u) for u in uids] and len(uids) == 34


def test_a_failed_save_is_counted_and_reading_goes_on(tmp_path, monkeypatch) -> None:
    from finsa.collectors.idslogs.rotating_files import SAVES

    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 3))
    store = PositionStore(tmp_path / "p.json")
    follower = LogFollower(lambda: [eve], "test-save", store, from_start=True).open()
    assert _drain(follower) == [0, 1, 2]

    def full(positions) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "save", full)
    before = SAVES.value(source="test-save", outcome="failed")
    assert not follower.commit() and SAVES.value(source="test-save", outcome="failed") == before + 1
    _append(eve, _lines(3, 4))
    assert _drain(follower) == [3]
    monkeypatch.undo()
    follower.close()
    assert _drain(LogFollower(lambda: [eve], "test-save", store, from_start=True).open()) == []


@pytest.mark.parametrize("name", ["growing_file", "read_positions", "zeek"])
def test_doctests(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"finsa.collectors.idslogs.{name}"))
    assert result.failed == 0 and result.attempted > 0


def test_a_file_gone_while_away_is_finished_from_its_renamed_copy_once(tmp_path) -> None:
    eve = tmp_path / "eve.json"
    _append(eve, _lines(0, 5))
    follower = _follower(tmp_path, [eve])
    got = _drain(follower)
    follower.close()
    _append(eve, _lines(5, 8))
    shutil.copy(eve, tmp_path / "eve.json.1")  # a copy of its own identity, then the original goes
    eve.unlink()
    follower = _follower(tmp_path, [eve])
    got += _drain(follower)
    assert got == list(range(8))
