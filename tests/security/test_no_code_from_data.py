"""Finding 1: the sector state in the changelog was a pickle, so a record planted on the changelog
topic ran code in the worker. The checkpoint is now JSON restored from an allow-list of classes:
the old exploit, and a JSON one naming a callable, restore nothing and run nothing."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import pytest

from finsa import wire
from finsa.institutions import parse_registry
from finsa.sector.picture import SectorPicture
from finsa.sector.state_codec import StateFormatError, decode_picture
from finsa.streams.sector_stage import RESTORES, SectorStage

REGISTRY = parse_registry({"institution": [
    {"id": f"pay-{i}", "name": f"Pay {i}", "subsector": "payment"} for i in range(1, 4)]})


class _Exploit:
    """What an attacker plants: unpickling it calls ``exec`` with the attacker's text."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def exploit_checkpoint(marker: Path) -> str:
    """The old checkpoint format (base64 pickle text) carrying the exploit."""
    return base64.b64encode(pickle.dumps(_Exploit(marker))).decode()


def _alerts() -> bytes:
    return wire.encode_batch(wire.ALERT.make_batch({
        "alert_id": ["a1", "a2"], "time_ms": [1_770_000_000_000, 1_770_000_060_000],
        "institution_id": ["pay-1", "pay-2"], "entity": ["203.0.113.66"] * 2, "entity_kind": ["src_ip"] * 2,
        "technique": ["T1046"] * 2, "severity": [4] * 2, "confidence": [0.9] * 2}))


def test_the_old_pickle_exploit_restores_nothing_and_runs_nothing(tmp_path) -> None:
    marker = tmp_path / "pwned"
    stage = SectorStage(SectorPicture(REGISTRY))
    before = RESTORES.value(outcome="refused")
    stage.restore(exploit_checkpoint(marker))
    assert not marker.exists()
    assert RESTORES.value(outcome="refused") == before + 1
    stage.observe_alerts(_alerts())  # the stage keeps working with a fresh picture
    assert stage.tick()["campaign"].rows()


def test_a_json_checkpoint_naming_anything_outside_the_allow_list_is_refused(tmp_path) -> None:
    running = SectorPicture(REGISTRY)
    for node in ({"$o": "builtins.exec", "v": {}}, {"$m": "os.system", "v": {}}, {"$x": 1},
                 {"$o": "picture.SectorPicture", "v": {"__class__": {"$o": "x", "v": {}}}}):
        text = json.dumps({"format": "finsa-sector-state", "version": 1, "picture": node})
        with pytest.raises(StateFormatError):
            decode_picture(text, running)
    with pytest.raises(StateFormatError, match="unsupported_version"):
        decode_picture(json.dumps({"format": "finsa-sector-state", "version": 99}), running)


def test_the_checkpoint_is_json_and_round_trips_the_learned_state() -> None:
    stage = SectorStage(SectorPicture(REGISTRY))
    stage.observe_alerts(_alerts())
    t = 1_770_000_000_000
    stage.observe_heartbeats(wire.encode_batch(wire.HEARTBEAT.make_batch({
        "time_ms": [t], "institution_id": ["pay-1"], "sensor_id": ["s1"]})), arrival_ms=t)
    stage.observe_flows(wire.FLOW.make_batch({"institution_id": ["pay-1"] * 3, "last_seen_ms": [t, t + 1, t + 2]}))
    for minute in range(1, 4):
        stage.tick(t + minute * 60_000)
    text = stage.checkpoint()
    assert json.loads(text)["format"] == "finsa-sector-state"
    again = SectorStage(SectorPicture(REGISTRY))
    again.restore(text)
    assert [c.campaign_id for c in again.picture.campaigns()] == [c.campaign_id for c in stage.picture.campaigns()]
    assert again.checkpoint() == text
    again.observe_alerts(_alerts())  # redelivered: ignored by the restored picture
    assert "warning" not in again.tick()
