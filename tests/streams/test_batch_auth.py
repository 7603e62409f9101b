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
