"""SCRAM server: the RFC 7677 vector, wrong proofs, unknown users, and the verifier file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat

import pytest

from finsa.streams.scram import ScramError, ScramServer, ScramStore, derive_credential


def _client_final(password: str, mechanism: str, client_first_bare: bytes, server_first: bytes) -> bytes:
    """What a correct client answers (RFC 5802 section 3)."""
    name = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
    attrs = dict(part.split(b"=", 1) for part in server_first.split(b","))
    salted = hashlib.pbkdf2_hmac(name, password.encode(), base64.b64decode(attrs[b"s"]), int(attrs[b"i"]))
    client_key = hmac.new(salted, b"Client Key", name).digest()
    without_proof = b"c=biws,r=" + attrs[b"r"]
    auth = client_first_bare + b"," + server_first + b"," + without_proof
    sig = hmac.new(hashlib.new(name, client_key).digest(), auth, name).digest()
    return without_proof + b",p=" + base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig)))


def test_rfc7677_example_exchange(monkeypatch) -> None:
    store = ScramStore()
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    store.set_credential("user", "SCRAM-SHA-256", derive_credential("pencil", "SCRAM-SHA-256", salt, 4096))
    monkeypatch.setattr(ScramServer, "server_nonce", staticmethod(lambda: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"))
    server = ScramServer(store, "SCRAM-SHA-256")
    first = server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    final = server.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert server.user == "user"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_right_password_logs_in_and_a_wrong_one_does_not(mechanism) -> None:
    store = ScramStore()
    store.add_user("bank-a-agent", "right", mechanism)
    for password, ok in (("right", True), ("wrong", False)):
        server = ScramServer(store, mechanism)
        bare = b"n=bank-a-agent,r=nonce123"
        first = server.step(b"n,," + bare)
        final = _client_final(password, mechanism, bare, first)
        if ok:
            assert server.step(final).startswith(b"v=") and server.user == "bank-a-agent"
        else:
            with pytest.raises(ScramError, match="authentication failed"):
                server.step(final)
            assert server.user is None


def test_unknown_user_gets_a_stable_decoy_salt_and_the_same_failure() -> None:
    store = ScramStore()
    store.add_user("bank-a-agent", "pw", "SCRAM-SHA-512")
    firsts = []
    for _ in range(2):
        server = ScramServer(store, "SCRAM-SHA-512")
        firsts.append(server.step(b"n,,n=ghost,r=abc"))
        with pytest.raises(ScramError, match="^authentication failed$"):
            server.step(_client_final("pw", "SCRAM-SHA-512", b"n=ghost,r=abc", firsts[-1]))
    salts = [dict(p.split(b"=", 1) for p in f.split(b","))[b"s"] for f in firsts]
    assert salts[0] == salts[1] and len(base64.b64decode(salts[0])) == 32


def test_mechanism_is_bound_to_the_credential() -> None:
    store = ScramStore()
    store.add_user("u", "pw", "SCRAM-SHA-512")
    server = ScramServer(store, "SCRAM-SHA-256")
    first = server.step(b"n,,n=u,r=x")
    with pytest.raises(ScramError):
        server.step(_client_final("pw", "SCRAM-SHA-256", b"n=u,r=x", first))


@pytest.mark.parametrize("message", [b"p=tls-unique,,n=u,r=x", b"n,,r=x", b"garbage", b"n,,n=u,r=x,m=ext",
                                     b"n,a=other,n=u,r=x"])
def test_malformed_or_unsupported_first_messages_are_refused(message) -> None:
    store = ScramStore()
    store.add_user("u", "pw", "SCRAM-SHA-256")
    with pytest.raises(ScramError):
        ScramServer(store, "SCRAM-SHA-256").step(message)


def test_file_holds_verifiers_only_with_owner_only_mode(tmp_path) -> None:
    path = tmp_path / "users.json"
    store = ScramStore(path)
    store.add_user("bank-a-agent", "hunter2-secret", "SCRAM-SHA-512", role="agent")
    store.add_user("worker", "w-secret", "SCRAM-SHA-256")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert "hunter2-secret" not in text and "w-secret" not in text
    again = ScramStore(path)
    assert again.users() == ["bank-a-agent", "worker"] and again.roles["bank-a-agent"] == "agent"
    assert again.lookup("bank-a-agent", "SCRAM-SHA-512") == store.lookup("bank-a-agent", "SCRAM-SHA-512")
    again.remove_user("worker")
    assert ScramStore(path).users() == ["bank-a-agent"]
