"""HTTP check-ins and drive-by delivery, with the benign look-alikes they must leave alone."""

from __future__ import annotations

from finsa.detectors.payload.httpc2 import DriveByDetector, HttpC2Detector
from finsa.wire import FLOW

T0 = 1_700_000_000_000


def http(rows: list[tuple]) -> object:
    """(offset_ms, client, server, requests joined by newlines, markers) rows."""
    n = len(rows)
    return FLOW.make_batch({"first_seen_ms": [T0 + r[0] for r in rows], "last_seen_ms": [T0 + r[0] + 900 for r in rows],
                            "src_ip": [r[1] for r in rows], "dst_ip": [r[2] for r in rows], "dst_port": [80] * n,
                            "protocol": [6] * n, "http_requests": [r[3] for r in rows], "app_markers": [r[4] for r in rows],
                            "flow_id": list(range(1, n + 1)), "institution_id": ["bank-a"] * n})


def test_check_in_to_a_generated_domain_naming_the_machine() -> None:
    b = http([(0, "10.0.2.15", "185.56.137.138", "GET\tdb54a845.top\t/2014/?c=MSEDGEWIN10&u=IEUser\t404\ttext/html", "")])
    (alert,) = HttpC2Detector().process(b)
    assert (alert["entity"], alert["target"], alert["technique"]) == ("185.56.137.138", "10.0.2.15", "T1071.001")


def test_ordinary_browsing_and_apis_are_not_check_ins() -> None:
    """Look-alikes: analytics with a user id, an API with host and user params on a named host,
    an intranet app on an address literal, a CDN host with a hexadecimal label."""
    b = http([(0, "10.1.0.5", "198.51.100.7", "GET\twww.google-analytics.com\t/collect?v=1&tid=UA-1&cid=5&uid=9\t200\t", ""),
              (1, "10.1.0.5", "198.51.100.8", "GET\tapi.bank-a.example\t/v1/session?user=alice&host=web1\t200\t"
               "application/json\nPOST\tapi.bank-a.example\t/v1/login\t200\tapplication/json", ""),
              (2, "10.1.0.5", "10.1.100.80", "GET\t10.1.100.80\t/app/?user=bob&computer=PC1\t200\ttext/html", ""),
              (3, "10.1.0.5", "198.51.100.9", "GET\td1a2b3c4e5f6.cloudfront.net\t/asset.js?v=3\t200\ttext/javascript", "")])
    assert HttpC2Detector().process(b) == []


def test_exploit_kit_payload_after_a_flash_container_in_either_order() -> None:
    swf = (0, "192.168.4.202", "74.208.103.8", "GET\tek.example\t/train/x.swf\t200\tapplication/x-shockwave-flash",
           "flash_or_java_from_dst")
    payload = (10_000, "192.168.4.202", "74.208.103.8", "GET\tek.example\t/1981/05/useless.html\t200\t"
               "application/octet-stream", "")
    for order in ([swf, payload], [payload, swf]):
        d = DriveByDetector()
        alerts = [a for row in order for a in d.process(http([row]))]
        assert [(a["entity"], a["target"], a["technique"]) for a in alerts] == [("74.208.103.8", "192.168.4.202", "T1189")]


def test_a_video_site_with_a_flash_player_and_file_downloads_is_not_a_drive_by() -> None:
    b = http([(0, "10.1.0.5", "198.51.100.7", "GET\tvideo.example\t/player.swf\t200\tapplication/x-shockwave-flash",
               "flash_or_java_from_dst"),
              (5_000, "10.1.0.5", "198.51.100.7", "GET\tvideo.example\t/files/report.pdf\t200\tapplication/octet-stream", ""),
              (9_000, "10.1.0.5", "198.51.100.8", "GET\tother.example\t/page.html\t200\tapplication/octet-stream", "")])
    assert DriveByDetector().process(b) == []


def test_a_newly_seen_host_adds_a_point_after_the_learning_period() -> None:
    """A dynamic-DNS host asked for with a POST after GETs has 3 points: with the host new after a
    day of learning it reaches 4; the same requests during the learning period do not."""
    reqs = "GET\tupd.hopto.org\t/a?x=1\t200\ttext/html\nPOST\tupd.hopto.org\t/b\t200\ttext/html"
    learn = http([(0, "10.1.0.5", "198.51.100.7", "GET\twww.bank-a.example\t/\t200\ttext/html", "")])
    early = http([(1_000, "10.1.0.6", "198.51.100.8", reqs, "")])
    late = http([(90_000_000, "10.1.0.7", "198.51.100.8", reqs.replace("upd.", "cmd."), "")])
    again = http([(90_000_000, "10.1.0.8", "198.51.100.8", reqs, "")])  # known since the learning period
    d = HttpC2Detector()
    assert d.process(learn) == [] and d.process(early) == [] and d.process(again) == []
    (alert,) = d.process(late)
    assert alert["target"] == "10.1.0.7" and '"newly_seen_host": 1' in alert["evidence"]
