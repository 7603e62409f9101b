"""``finsa worker`` whose store fails on demand: ``python -m tests.reliability.faulty_worker worker ...``.

The real worker command runs unchanged; only the Store it opens is wrapped. While the file named
by ``$FINSA_TEST_STORAGE_FAULT`` exists, every ``insert``/``insert_many`` first reads it:

* ``raise``: the write fails with a StorageError (storage down);
* ``sleep SECONDS``: the write waits that long, then goes through (storage slow).

Each injected fault appends a line to ``<file>.hits`` so a test can tell the fault was exercised.
Removing the file ends the fault.

>>> FaultyStore(object(), Path("/nonexistent"))._fault() is None
True
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from finsa.errors import StorageError


class FaultyStore:
    """A Store proxy that fails or stalls writes while ``fault_file`` exists."""

    def __init__(self, store: Any, fault_file: Path) -> None:
        self._store, self._fault_file = store, fault_file

    def _fault(self) -> str | None:
        try:
            return self._fault_file.read_text().strip() or "raise"
        except OSError:
            return None

    def _inject(self) -> None:
        fault = self._fault()
        if fault is None:
            return
        with open(f"{self._fault_file}.hits", "a", encoding="utf-8") as hits:
            hits.write(f"{fault} at {time.time():.1f}\n")
        if fault.startswith("sleep"):
            time.sleep(float(fault.split()[1]))
            return
        raise StorageError("injected fault: storage is down")

    def insert(self, batch: Any) -> bool:
        self._inject()
        return self._store.insert(batch)

    def insert_many(self, batches: Any) -> int:
        self._inject()
        return self._store.insert_many(batches)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def main(argv: list[str]) -> int:
    import finsa.storage.backend as backend
    from finsa.app.cli import main as finsa_main

    fault_file = Path(os.environ["FINSA_TEST_STORAGE_FAULT"])
    real_open = backend.open_store
    backend.open_store = lambda *a, **k: FaultyStore(real_open(*a, **k), fault_file)
    return finsa_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
