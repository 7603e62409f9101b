"""The short version of the soak test (the long one: `python -m bench soak`, 10 minutes at twice the
embedded design rate): under steady load on the real parts nothing is lost and the lag drains."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def test_steady_load_loses_nothing_and_the_lag_drains(reliability) -> None:
    from bench.stream import measure
    from tests.reliability.report import Outcome

    r = measure(rate=4000, seconds=12)
    reliability(Outcome("steady load 4k flows/s for 12 s (soak, short)", r["sent"], r["stored"], 0,
                        r["sent"] - r["stored"]))
    assert r["sent"] >= 40_000
    assert r["stored"] == r["sent"] and r["final_lag"] == 0
    rss = [s[1] for s in r["samples"]]
    assert rss and max(rss) < 4 * 2**30  # bounded: a worker leaking per flow would blow past this
