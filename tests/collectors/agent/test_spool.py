from __future__ import annotations

import os

import pytest

from finsa.collectors.agent.spool import DROPPED, RECOVERED, Spool, SpoolBusyError


def _id(i: int) -> bytes:
    return i.to_bytes(16, "big")


def _payloads(spool: Spool) -> list[bytes]:
    return [spool.read(e) for e in spool.entries()]


def test_fifo_and_ack_driven_release(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_batches=100, segment_bytes=100).open()
    for i in range(10):
        assert spool.append(_id(i), b"x%d" % i * 10)
    assert _payloads(spool) == [b"x%d" % i * 10 for i in range(10)]
    for i in (0, 2, 5):
        assert spool.ack(_id(i))
    assert not spool.ack(_id(2))  # a second ack of the same batch is ignored
    assert [e.batch_id for e in spool.entries()] == [_id(i) for i in (1, 3, 4, 6, 7, 8, 9)]
    assert spool.depth_batches == 7
    first = spool.entries()[0]
    assert [e.batch_id for e in spool.entries(after_seq=first.seq, limit=2)] == [_id(3), _id(4)]


def test_fully_acknowledged_segments_are_deleted(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_batches=100, segment_bytes=64).open()
    for i in range(6):
        spool.append(_id(i), b"p" * 40)  # one record per segment
    assert len(list(tmp_path.glob("*.seg"))) == 6
    for i in range(6):
        spool.ack(_id(i))
    spool.close()
    assert list(tmp_path.glob("*.seg")) == [] and spool.depth_bytes == 0


def test_survives_a_restart_in_order(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_batches=100, segment_bytes=200).open()
    for i in range(12):
        spool.append(_id(i), b"batch-%d" % i)
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, max_batches=100, segment_bytes=200).open()
    assert _payloads(again) == [b"batch-%d" % i for i in range(12)]
    again.append(_id(99), b"after restart")
    assert _payloads(again)[-1] == b"after restart" and again.depth_batches == 13


def test_torn_last_record_is_truncated_and_counted(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_batches=100).open()
    for i in range(3):
        spool.append(_id(i), b"record-%d" % i)
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    size = segment.stat().st_size
    with open(segment, "r+b") as fh:  # a crash in the middle of writing the third record
        fh.truncate(size - 4)
    before = RECOVERED.value(what="torn_tail")
    again = Spool(tmp_path, max_bytes=1 << 20, max_batches=100).open()
    assert _payloads(again) == [b"record-0", b"record-1"]
    assert RECOVERED.value(what="torn_tail") == before + 1
    assert segment.stat().st_size < size - 4


def test_corrupt_record_ends_the_segment(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_batches=100).open()
    for i in range(3):
        spool.append(_id(i), b"record-%d" % i)
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # flip a bit of the last payload: its CRC no longer matches
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path, max_bytes=1 << 20, max_batches=100).open()
    assert _payloads(again) == [b"record-0", b"record-1"]


def test_full_spool_refuses_new_batches_and_keeps_the_oldest(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_batches=3).open()
    before = DROPPED.value(limit="batches")
    results = [spool.append(_id(i), b"b%d" % i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert DROPPED.value(limit="batches") == before + 2
    assert _payloads(spool) == [b"b0", b"b1", b"b2"]
    spool.ack(_id(0))
    assert spool.append(_id(5), b"b5")  # room again once the broker acknowledged one


def test_byte_limit(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=200, max_batches=100).open()
    before = DROPPED.value(limit="bytes")
    assert spool.append(_id(0), b"a" * 100)
    assert not spool.append(_id(1), b"b" * 100)
    assert DROPPED.value(limit="bytes") == before + 1 and spool.depth_bytes <= 200


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError):
        Spool(tmp_path, max_bytes=0, max_batches=1)
    spool = Spool(tmp_path, max_bytes=100, max_batches=1).open()
    with pytest.raises(ValueError):
        spool.append(b"short", b"x")
    assert [p for p in os.listdir(tmp_path) if p.endswith(".seg")] == []


def test_one_process_at_a_time(tmp_path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, max_batches=10).open()
    with pytest.raises(SpoolBusyError):
        Spool(tmp_path, max_bytes=1 << 20, max_batches=10).open()
    first.close()
    Spool(tmp_path, max_bytes=1 << 20, max_batches=10).open().close()
