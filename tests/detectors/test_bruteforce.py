"""Login brute force is found; alike polling below the web threshold and varied sessions are not."""

from __future__ import annotations

import numpy as np

from finsa.detectors.bruteforce import BruteForceDetector


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


def test_ssh_brute_force_is_alerted(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.benign(10_000, duration_ms=200_000),
                            synth.bruteforce("10.1.100.4", 22, 36, t0 + 20_000, attacker="198.51.100.200"),
                            batch_rows=300)
    alerts = run(BruteForceDetector(), batches)
    # 72 s of attempts straddle two windows: at most one alert in each
    assert {(a["institution_id"], a["entity"], a["entity_kind"], a["target"], a["technique"])
            for a in alerts} == {("bank-a", "198.51.100.200", "src_ip", "10.1.100.4:22", "T1110")}
    windows = [a["time_ms"] // 60_000 for a in alerts]
    assert len(windows) == len(set(windows)) <= 2


def test_rdp_brute_force_across_batches_and_windows(synth) -> None:
    batches = synth.batches(synth.bruteforce("10.1.100.7", 3389, 20, synth.T0_MS + 50_000, spacing_ms=3_000),
                            batch_rows=3)
    alerts = run(BruteForceDetector(), batches)
    # 60 s of attempts straddle two windows: one alert in each at most, the first within 10 attempts
    assert {a["target"] for a in alerts} == {"10.1.100.7:3389"}
    windows = [a["time_ms"] // 60_000 for a in alerts]
    assert len(windows) == len(set(windows)) <= 2
    assert alerts[0]["time_ms"] <= synth.T0_MS + 50_000 + 10 * 3_000 + 1_700


def test_web_polling_below_the_web_threshold_is_not_brute_force(synth) -> None:
    batches = synth.batches(synth.bruteforce("10.1.100.1", 443, 40, synth.T0_MS, spacing_ms=2_000))
    assert run(BruteForceDetector(), batches) == []


def test_varied_sessions_are_not_brute_force(synth) -> None:
    cols = synth.bruteforce("10.1.100.4", 22, 40, synth.T0_MS)
    cols["src2dst_bytes"] = np.random.default_rng(1).integers(500, 50_000, 40)
    assert run(BruteForceDetector(), synth.batches(cols)) == []


def test_benign_traffic_raises_no_brute_force_alert(synth) -> None:
    batches = synth.batches(synth.benign(30_000, duration_ms=300_000, n_clients=300), batch_rows=1_000)
    assert run(BruteForceDetector(), batches) == []


def test_slow_brute_force_one_attempt_every_20_s_is_alerted(synth) -> None:
    """hydra with one task: an SSH login every 20 s for 20 minutes, far under any per-minute count."""
    t0 = synth.T0_MS
    batches = synth.batches(synth.benign(10_000, duration_ms=1_300_000),
                            synth.bruteforce("10.1.100.4", 22, 60, t0 + 20_000, spacing_ms=20_000,
                                             attacker="198.51.100.201"), batch_rows=300)
    alerts = run(BruteForceDetector(), batches)
    assert alerts and {a["entity"] for a in alerts} == {"198.51.100.201"}
    assert alerts[0]["time_ms"] <= t0 + 20_000 + 30 * 20_000  # within 30 attempts


def test_monitoring_logins_every_minute_are_not_brute_force(synth) -> None:
    """check_by_ssh every 60 s and an FTP poll every 30 s for two hours, identical sessions."""
    polls = [synth.bruteforce("10.1.100.4", 22, 120, synth.T0_MS, spacing_ms=60_000, attacker="10.1.9.9"),
             synth.bruteforce("10.1.100.5", 21, 240, synth.T0_MS, spacing_ms=30_000, attacker="10.1.9.9")]
    assert run(BruteForceDetector(), synth.batches(*polls, batch_rows=50)) == []


def _kerberos(synth, n: int, reply_bytes, start_ms: int, client: str) -> dict:
    cols = synth.bruteforce("10.1.100.88", 88, n, start_ms, spacing_ms=10, attacker=client)
    cols.update(protocol=[17] * n, src2dst_packets=[1] * n, dst2src_packets=[1] * n,
                src2dst_bytes=180 + np.arange(n) % 10, dst2src_bytes=np.full(n, reply_bytes),
                src2dst_tcp_flags=[0] * n, dst2src_tcp_flags=[0] * n)
    cols["last_seen_ms"] = cols["first_seen_ms"] + 1
    return cols


def test_kerberos_password_spray_over_udp_is_alerted(synth) -> None:
    """kerbrute: AS-REQs for many users, each answered by a KRB-ERROR (PREAUTH_FAILED, unknown user)."""
    alerts = run(BruteForceDetector(), synth.batches(_kerberos(synth, 30, 130, synth.T0_MS, "172.16.66.1")))
    assert [(a["entity"], a["target"]) for a in alerts] == [("172.16.66.1", "10.1.100.88:88")]


def test_terminal_server_logons_are_not_kerberos_spraying(synth) -> None:
    """A terminal server's users logging on every 5 s: each logon one PREAUTH_REQUIRED error,
    then an AS-REP and TGS-REPs carrying tickets (kilobytes)."""
    parts = []
    for i in range(120):
        start = synth.T0_MS + i * 5_000
        parts.append(_kerberos(synth, 1, 230, start, "10.1.7.1"))
        parts.append(_kerberos(synth, 3, 1_600, start + 20, "10.1.7.1"))
    assert run(BruteForceDetector(), synth.batches(*parts, batch_rows=20)) == []


def test_ftp_brute_force_read_from_server_first_flows(synth) -> None:
    """A capture that missed the clients' first packets: flows start at the FTP server (port 21)."""
    cols = synth.bruteforce("10.121.70.151", 21, 40, synth.T0_MS, spacing_ms=500, attacker="10.234.125.254")
    cols.update(src_ip=cols["dst_ip"], dst_ip=cols["src_ip"], src_port=cols["dst_port"], dst_port=cols["src_port"],
                src2dst_bytes=cols["dst2src_bytes"], dst2src_bytes=cols["src2dst_bytes"])
    alerts = run(BruteForceDetector(), synth.batches(cols))
    assert [(a["entity"], a["target"]) for a in alerts] == [("10.234.125.254", "10.121.70.151:21")]


def test_backups_over_ssh_are_not_brute_force(synth) -> None:
    """rsync over SSH every 10 s for 10 min: long sessions of very different sizes."""
    cols = synth.bruteforce("10.1.100.4", 22, 60, synth.T0_MS, spacing_ms=10_000, attacker="10.1.3.3")
    cols["src2dst_bytes"] = np.random.default_rng(2).integers(100_000, 50_000_000, 60)
    assert run(BruteForceDetector(), synth.batches(cols)) == []


def test_web_login_brute_force_is_alerted_and_a_busy_api_client_is_not(synth) -> None:
    """hydra http-post-form: 5 logins a second, the same failure page each time; a partner API
    called 2 times a second with answers of every size."""
    attack = synth.bruteforce("10.1.100.80", 443, 300, synth.T0_MS, spacing_ms=200, attacker="198.51.100.202")
    api = synth.bruteforce("10.1.100.81", 443, 600, synth.T0_MS, spacing_ms=500, attacker="192.0.2.20")
    api["dst2src_bytes"] = np.random.default_rng(3).lognormal(8, 1, 600).astype(int) + 200
    alerts = run(BruteForceDetector(), synth.batches(attack, api, batch_rows=100))
    assert {(a["entity"], a["target"]) for a in alerts} == {("198.51.100.202", "10.1.100.80:443")}
