"""LogTail: complete lines only, rotation, truncation, start at the end, bounded line length."""

from __future__ import annotations

import os

from finsa import wire
from finsa.collectors.idslogs.growing_file import SKIPPED, LogTail, rows_to_batch


def _append(path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def test_missing_file_then_partial_lines(tmp_path) -> None:
    path = tmp_path / "eve.json"
    tail = LogTail(path)
    assert tail.read_lines() == []
    _append(path, "a\nb")
    assert tail.read_lines() == ["a"]
    assert tail.read_lines() == []
    _append(path, "c\r\nd\n")
    assert tail.read_lines() == ["bc", "d"]


def test_rotation_reads_old_file_to_its_end_then_new(tmp_path) -> None:
    path = tmp_path / "conn.log"
    _append(path, "1\n")
    tail = LogTail(path)
    assert tail.read_lines() == ["1"]
    _append(path, "2\n")
    os.rename(path, tmp_path / "conn.log.1")
    _append(path, "3\n4\n")
    assert tail.read_lines() == ["2", "3", "4"]
    _append(path, "5\n")
    assert tail.read_lines() == ["5"]


def test_truncation_starts_again(tmp_path) -> None:
    path = tmp_path / "conn.log"
    _append(path, "first line\nsecond line\n")
    tail = LogTail(path)
    assert len(tail.read_lines()) == 2
    path.write_text("new\n")
    assert tail.read_lines() == ["new"]


def test_from_end_skips_existing_content(tmp_path) -> None:
    path = tmp_path / "conn.log"
    _append(path, "old\n")
    tail = LogTail(path, from_start=False)
    assert tail.read_lines() == []
    _append(path, "new\n")
    assert tail.read_lines() == ["new"]


def test_over_long_lines_are_dropped_and_counted(tmp_path) -> None:
    path = tmp_path / "eve.json"
    before = SKIPPED.value(source="t", reason="line_too_long")
    tail = LogTail(path, max_line_bytes=10, chunk_bytes=4, source="t")
    _append(path, "ok\n" + "x" * 25)
    assert tail.read_lines() == ["ok"]
    assert len(tail._partial) <= 10
    _append(path, "x" * 5 + "\nafter\n" + "y" * 11 + "\nlast\n")
    assert tail.read_lines() == ["after", "last"]
    assert SKIPPED.value(source="t", reason="line_too_long") - before == 2


def test_max_lines_per_call(tmp_path) -> None:
    path = tmp_path / "conn.log"
    _append(path, "".join(f"{i}\n" for i in range(50)))
    tail = LogTail(path, chunk_bytes=8)
    first = tail.read_lines(max_lines=10)
    assert 10 <= len(first) < 50
    rest = tail.read_lines()
    assert first + rest == [str(i) for i in range(50)]


def test_rows_to_batch_defaults_and_big_ids() -> None:
    batch = rows_to_batch(wire.FLOW, [{"flow_id": 2**64 - 1, "src_ip": "10.0.0.1"}, {"flow_id": 5}])
    assert batch.columns["flow_id"].tolist() == [2**64 - 1, 5]
    assert [r["src_ip"] for r in batch.rows()] == ["10.0.0.1", ""]
    assert rows_to_batch(wire.FLOW, []) is None


def test_from_end_reads_a_file_created_later_from_its_start(tmp_path) -> None:
    path = tmp_path / "conn.log"
    tail = LogTail(path, from_start=False)
    assert tail.read_lines() == []
    _append(path, "born\n")
    assert tail.read_lines() == ["born"]
