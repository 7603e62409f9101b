"""The agent's address translation as a browser uses it: one ``POST /translate`` per result table.

    python -m bench.translate --addresses 1000

Starts a real :class:`~finsa.collectors.agent.endpoint.LocalEndpoint` on loopback and prints the
median of 5 batch calls (fresh addresses: nothing cached) and of 5 repeated calls (the agent's
per-address and per-prefix caches warm), for clear -> pseudonym and pseudonym -> clear.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

from finsa.collectors.agent.endpoint import LocalEndpoint
from finsa.collectors.agent.pseudonym import Pseudonymiser


def _post(port: int, addresses: list[str]) -> tuple[float, list[dict]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/translate", data=json.dumps({"addresses": addresses}).encode(),
                                     headers={"Authorization": "Bearer bench", "Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        results = json.loads(response.read())["results"]
    return time.perf_counter() - t0, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=1000)
    args = parser.parse_args(argv)
    endpoint = LocalEndpoint(None, token="bench", pseudonymiser=Pseudonymiser(bytes(range(32)), ["10.0.0.0/8"])).start()
    try:
        fresh, warm, back = [], [], []
        for run in range(5):
            clear = [f"10.{run}.{k // 256}.{k % 256}" for k in range(args.addresses)]
            seconds, results = _post(endpoint.port, clear)
            fresh.append(seconds)
            warm.append(_post(endpoint.port, clear)[0])
            back.append(_post(endpoint.port, [r["pseudonym"] for r in results])[0])
    finally:
        endpoint.stop()
    for name, runs in (("clear -> pseudonym, fresh", fresh), ("clear -> pseudonym, warm", warm),
                       ("pseudonym -> clear", back)):
        print(f"{name:28s} {args.addresses} addresses: {statistics.median(runs) * 1000:8.1f} ms per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
