"""The sector picture takes an edited institutions file without a restart, and a checkpoint
restored after a restart takes the registry the worker was started with.

An institution onboarded while a campaign runs is warned like the members known from the start;
what the picture learned before the edit (campaigns, warnings issued) stays.
"""

from __future__ import annotations

import sys

from finsa import wire
from finsa.institutions import parse_registry
from finsa.sector.picture import SectorPicture
from finsa.streams.sector_stage import SectorStage
from finsa.app.stream_worker import registry_watcher
from tests.fakes import MemoryStore
from tests.streams.test_sector_stage import scan_alerts


def _registry(*ids: str):
    return parse_registry({"institution": [{"id": i, "name": i, "subsector": "payment"} for i in ids]})


def _warned(update) -> set[str]:  # a SectorUpdate
    return {w.institution_id for w in update.warnings if w.kind == "campaign_spread"}


def test_an_institution_added_while_a_campaign_runs_is_warned() -> None:
    picture = SectorPicture(_registry("pay-1", "pay-2", "pay-3"), k=2)
    batch = scan_alerts(["pay-1"])
    picture.observe_alerts(batch)
    first = picture.tick()
    picture.use_configuration(_registry("pay-1", "pay-2", "pay-3", "pay-4"))  # pay-4 onboarded
    picture.observe_alerts(scan_alerts(["pay-2"], start_ms=int(batch.columns["time_ms"][0]) + 60_000))
    update = picture.tick()
    assert _warned(first) == set()
    assert _warned(update) == {"pay-3", "pay-4"}
    assert [c.institution_order() for c in picture.campaigns()] == [["pay-1", "pay-2"]]  # kept across the edit


def test_without_the_edit_the_new_institution_is_not_warned() -> None:
    picture = SectorPicture(_registry("pay-1", "pay-2", "pay-3"), k=2)
    picture.observe_alerts(scan_alerts(["pay-1", "pay-2"]))
    assert _warned(picture.tick()) == {"pay-3"}


def test_a_restored_checkpoint_takes_the_running_registry() -> None:
    old = SectorStage(SectorPicture(_registry("pay-1", "pay-2", "pay-3"), k=2), MemoryStore())
    old.observe_alerts(wire.encode_batch(scan_alerts(["pay-1"])))
    saved = old.checkpoint()
    new = SectorStage(SectorPicture(_registry("pay-1", "pay-2", "pay-3", "pay-4"), k=2), MemoryStore())
    new.restore(saved)
    assert set(new.picture.registry.by_id) == {"pay-1", "pay-2", "pay-3", "pay-4"}
    later = scan_alerts(["pay-2"], start_ms=1_770_000_000_000 + 60_000)
    new.picture.observe_alerts(later)
    assert _warned(new.picture.tick()) == {"pay-3", "pay-4"}  # pay-1's alert came from the checkpoint


def test_the_worker_watches_the_registry_file_and_keeps_the_old_one_when_invalid(tmp_path, capsys) -> None:
    path = tmp_path / "institutions.toml"
    entry = '[[institution]]\nid = "{}"\nname = "x"\nsubsector = "payment"\n'
    path.write_text(entry.format("pay-1"))
    stage = SectorStage(SectorPicture(_registry("pay-1")), MemoryStore())
    watcher = registry_watcher(path, stage.use_registry, lambda line: print(line, file=sys.stderr))
    try:
        path.write_text(entry.format("pay-1") + entry.format("pay-2"))
        assert watcher.poll()
        assert set(stage.picture.registry.by_id) == {"pay-1", "pay-2"}
        path.write_text(entry.format("pay-1") + 'nonsense = 1\n')
        watcher.poll()
        assert set(stage.picture.registry.by_id) == {"pay-1", "pay-2"}
        assert "refused, keeping the running registry" in capsys.readouterr().err
    finally:
        watcher.stop()
