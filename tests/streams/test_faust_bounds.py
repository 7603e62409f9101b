"""The worker's Faust app carries the memory bounds of :class:`WorkerSettings` (issue 17: a soak's
RSS must not grow with the lag): the stream buffer and the consumer's poll size, not Faust's
defaults (4096 buffered messages, unlimited poll); freed memory handed back to the system."""

from __future__ import annotations

from finsa import wire
from finsa.streams.faust_app import WorkerSettings, build_app
from finsa.streams.processor import FlowProcessor


class _Memory:
    def insert(self, batch) -> bool:
        return True


class _NoDetect:
    def process(self, flows):
        return wire.ALERT.make_batch({}, n_rows=0)


def _app(tmp_path, **bounds):
    settings = WorkerSettings("127.0.0.1:9", app_id="bounds", datadir=tmp_path, **bounds)
    return build_app(settings, FlowProcessor(_Memory(), _NoDetect()))


def test_default_bounds_replace_fausts_defaults(tmp_path) -> None:
    conf = _app(tmp_path).conf
    assert conf.stream_buffer_maxsize == WorkerSettings.buffer_messages < 4096
    assert conf.broker_max_poll_records == WorkerSettings.poll_messages
    assert conf.broker_max_poll_records is not None


def test_bounds_follow_the_settings(tmp_path) -> None:
    conf = _app(tmp_path, buffer_messages=32, poll_messages=8).conf
    assert (conf.stream_buffer_maxsize, conf.broker_max_poll_records) == (32, 8)


def test_the_worker_hands_freed_memory_back_on_a_timer(tmp_path) -> None:
    trimming, not_trimming = _app(tmp_path), _app(tmp_path, trim_every_s=0)
    assert WorkerSettings.trim_every_s > 0 and WorkerSettings.malloc_arenas > 0
    assert len(trimming._app_tasks) == len(not_trimming._app_tasks) + 1  # the trim timer, only when asked
