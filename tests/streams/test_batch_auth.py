"""A worker accepts a flow batch only when it is signed by the institution its rows belong to."""

from __future__ import annotations

from finsa import wire
from finsa.batchauth import BatchVerifier, sign_headers
from finsa.streams.processor import FlowProcessor
from tests.fakes import MemoryStore, NoDetect

KEYS = {"bank-a": b"a" * 32, "bank-b": b"b" * 32}




def _payload(institution: str) -> bytes:
    return wire.encode_batch(wire.FLOW.make_batch({"institution_id": [institution] * 3, "dst_port": [1, 2, 3]}))


def test_signed_batches_pass_and_every_forgery_is_dead_lettered_with_its_reason() -> None:
    store = MemoryStore()
    proc = FlowProcessor(store, NoDetect(), verifier=BatchVerifier(KEYS))
    good = _payload("bank-a")
    forged_rows = _payload("bank-b")  # rows claim bank-b, signed by bank-a's key
    unknown = _payload("casino")
    payloads = [good, forged_rows, good[:-1] + b"X", _payload("bank-a"), unknown]
    headers = [sign_headers(good, "bank-a", KEYS["bank-a"]),
               sign_headers(forged_rows, "bank-a", KEYS["bank-a"]),
               sign_headers(good, "bank-a", KEYS["bank-a"]),  # payload tampered after signing
               None,
               sign_headers(unknown, "casino", b"c" * 32)]
    outcome = proc.process_group(payloads, headers)
    assert [(i, reason) for i, reason, _ in outcome.dead] == [
        (1, "institution_mismatch"), (2, "bad_signature"), (3, "unsigned"), (4, "unknown_institution")]
    assert outcome.flows == 3 and len(store.batches) == 1


def test_without_a_verifier_unsigned_batches_are_accepted() -> None:
    proc = FlowProcessor(MemoryStore(), NoDetect())
    assert proc.process_group([_payload("bank-a")]).flows == 3


def test_a_key_dropped_into_the_key_folder_is_used_at_the_next_batch(tmp_path) -> None:
    """Onboarding: the folder changed since the verifier last read it, so an unknown institution's
    batch makes it read the folder at once (not only every reload_interval_s)."""
    import time

    (tmp_path / "bank-a.key").write_text(KEYS["bank-a"].hex())
    verifier = BatchVerifier(KEYS, key_dir=tmp_path, reload_interval_s=3600)
    proc = FlowProcessor(MemoryStore(), NoDetect(), verifier=verifier)
    newcomer, key = _payload("bank-new"), b"n" * 32
    signed = sign_headers(newcomer, "bank-new", key)
    assert [r for _, r, _ in proc.process_group([newcomer], [signed]).dead] == ["unknown_institution"]
    assert [r for _, r, _ in proc.process_group([newcomer], [signed]).dead] == ["unknown_institution"]
    time.sleep(0.05)  # the folder's mtime moves on the filesystem's clock tick
    (tmp_path / "bank-new.key").write_text(key.hex() + "\n")
    assert proc.process_group([newcomer], [signed]).flows == 3
