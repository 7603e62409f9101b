"""Finding 2: alerts and heartbeats were never signature-checked, so an unsigned alert batch
claiming bank-b was stored and a forged heartbeat raised a clock-offset emergency for bank-b.
Now the sector stage verifies them like flow batches: institution bound to key, replay refused,
every refusal counted by reason (the worker dead-letters it)."""

from __future__ import annotations

from finsa import wire
from finsa.batchauth import SERVICE_SIGNER, BatchVerifier, sign_headers
from finsa.institutions import parse_registry
from finsa.sector.picture import SectorPicture
from finsa.streams.sector_stage import SECTOR_DEAD, SectorStage
from tests.fakes import MemoryStore

KEYS = {"bank-a": b"a" * 32, "bank-b": b"b" * 32, SERVICE_SIGNER: b"s" * 32}
REGISTRY = parse_registry({"institution": [
    {"id": i, "name": i, "subsector": "bank"} for i in ("bank-a", "bank-b", "bank-c")]})
T = 1_770_000_000_000


def _alerts(institution: str, n: int = 40) -> bytes:
    return wire.encode_batch(wire.ALERT.make_batch({
        "alert_id": [f"forged-{institution}-{i}" for i in range(n)], "time_ms": [T + i for i in range(n)],
        "institution_id": [institution] * n, "entity": ["203.0.113.9"] * n, "entity_kind": ["src_ip"] * n,
        "technique": ["T1046"] * n, "severity": [4] * n, "confidence": [0.9] * n}))


def _heartbeat(institution: str, time_ms: int) -> bytes:
    return wire.encode_batch(wire.HEARTBEAT.make_batch({
        "time_ms": [time_ms], "institution_id": [institution], "sensor_id": ["s1"]}))


def _stage() -> tuple[SectorStage, MemoryStore]:
    store = MemoryStore()
    return SectorStage(SectorPicture(REGISTRY), store, verifier=BatchVerifier(KEYS)), store


def test_unsigned_and_mismatched_alerts_are_refused_by_reason_and_never_stored() -> None:
    stage, store = _stage()
    forged = _alerts("bank-b")
    before = {r: SECTOR_DEAD.value(reason=r) for r in ("unsigned", "institution_mismatch", "bad_signature", "replay")}
    assert stage.observe_alerts(forged) == "unsigned"
    assert stage.observe_alerts(forged, sign_headers(forged, "bank-a", KEYS["bank-a"])) == "institution_mismatch"
    assert stage.observe_alerts(forged, sign_headers(forged, "bank-b", KEYS["bank-a"])) == "bad_signature"
    assert stage.alerts_seen == 0 and store.batches == []
    signed = sign_headers(forged, "bank-b", KEYS["bank-b"])
    assert stage.observe_alerts(forged, signed) is None
    assert stage.alerts_seen == 40 and len(store.batches) == 1
    assert stage.observe_alerts(forged, signed) == "replay"
    after = {r: SECTOR_DEAD.value(reason=r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {
        "unsigned": 1, "institution_mismatch": 1, "bad_signature": 1, "replay": 1}


def test_the_workers_own_alerts_signed_with_the_sector_key_pass_for_any_institution() -> None:
    stage, store = _stage()
    mixed = wire.RecordBatch.concat([wire.decode_batch(_alerts("bank-a", 2)), wire.decode_batch(_alerts("bank-b", 2))])
    payload = wire.encode_batch(mixed)
    assert stage.observe_alerts(payload, sign_headers(payload, SERVICE_SIGNER, KEYS[SERVICE_SIGNER])) is None
    assert stage.alerts_seen == 4


def test_a_forged_heartbeat_raises_no_emergency() -> None:
    stage, store = _stage()
    forged = _heartbeat("bank-b", T - 3_600_000)  # an hour off: a clock-offset emergency if believed
    assert stage.observe_heartbeats(forged, arrival_ms=T) == "unsigned"
    assert stage.observe_heartbeats(forged, sign_headers(forged, "bank-a", KEYS["bank-a"]), arrival_ms=T) \
        == "institution_mismatch"
    assert "emergency" not in stage.tick(T + 60_000)
    assert store.batches == [] or all(b.type is not wire.HEARTBEAT for b in store.batches)
    honest = _heartbeat("bank-b", T)
    assert stage.observe_heartbeats(honest, sign_headers(honest, "bank-b", KEYS["bank-b"]), arrival_ms=T) is None
    assert any(b.type is wire.HEARTBEAT for b in store.batches)


def test_a_worker_without_batch_keys_says_loudly_it_accepts_unsigned_data(tmp_path, capsys) -> None:
    from finsa.app.worker import batch_verifier

    assert batch_verifier(None) is None
    assert "ACCEPTS UNSIGNED" in capsys.readouterr().err
    (tmp_path / "bank-a.key").write_text(KEYS["bank-a"].hex())
    verifier = batch_verifier(tmp_path)
    assert verifier.service_key is not None and set(verifier.keys) == {"bank-a", SERVICE_SIGNER}
    assert (tmp_path / f"{SERVICE_SIGNER}.key").stat().st_mode & 0o777 == 0o600
    assert capsys.readouterr().err == ""
