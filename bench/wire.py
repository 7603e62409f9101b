"""Wire benchmark: a 10k-row flow batch through finsa.wire, JSON lines and pickle.

Encode and decode are timed separately, in CPU seconds (single-threaded code), best of
``repeats`` runs. JSON lines and pickle carry the same rows as dicts (addresses as text, as a
JSON producer would send them); decoding them yields dicts, decoding finsa's format yields
numpy columns, which is what the consumers (detectors, storage) work on.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Any, Callable

from bench.flows import synthetic_flows
from bench.report import Result, table
from finsa.wire import FLOW, decode_batch, encode_batch

__all__ = ["run", "codecs"]


def _best_cpu_s(fn: Callable[[], Any], repeats: int, sample_s: float = 0.05) -> float:
    """CPU seconds of one call: best of ``repeats`` samples, each looping for >= ``sample_s``."""
    t0 = time.process_time()
    fn()
    loops = max(1, int(sample_s / max(time.process_time() - t0, 1e-6)))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(loops):
            fn()
        best = min(best, (time.process_time() - t0) / loops)
    return best


def codecs(rows: list[dict]) -> dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any], Any]]:
    """name -> (encode, decode, input) for every format compared."""
    batch = FLOW.make_batch({k: [r[k] for r in rows] for k in FLOW.names})
    return {
        "finsa": (encode_batch, lambda b: decode_batch(b, FLOW), batch),
        "finsa zlib": (lambda x: encode_batch(x, compress=True), lambda b: decode_batch(b, FLOW), batch),
        "json lines": (lambda rs: "\n".join(json.dumps(r) for r in rs).encode(),
                       lambda b: [json.loads(line) for line in b.decode().split("\n")], rows),
        "pickle dicts": (lambda rs: pickle.dumps(rs, protocol=pickle.HIGHEST_PROTOCOL), pickle.loads, rows),
    }


def run(quick: bool, rows_per_batch: int = 10_000) -> list[str]:
    repeats = 3 if quick else 10
    rows = synthetic_flows(rows_per_batch, seed=3).rows()
    encode_rows, decode_rows = [], []
    for name, (enc, dec, value) in codecs(rows).items():
        payload = enc(value)
        assert len(dec(payload)) == rows_per_batch
        size = f"{len(payload) / rows_per_batch:,.1f} bytes/row"
        encode_rows.append(Result(name, rows_per_batch, _best_cpu_s(lambda enc=enc, value=value: enc(value), repeats), "cpu", size))
        decode_rows.append(Result(name, rows_per_batch, _best_cpu_s(lambda dec=dec, payload=payload: dec(payload), repeats), "cpu", size))
    note = f"({rows_per_batch:,}-row flow batch, best of {repeats})"
    return [table(f"wire: encode {note}", "row", encode_rows), table(f"wire: decode {note}", "row", decode_rows)]
