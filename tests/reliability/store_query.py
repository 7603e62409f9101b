"""Print the rows of SQL on a store folder as JSON lines: ``python -m tests.reliability.store_query DIR SQL``.

Runs in its own process because chdb lets one process at a time open a folder (the worker's,
once it stopped). No migration, no audit entry: it only reads.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from finsa.storage.backend import open_store

    data_dir, sql = argv
    store = open_store(data_dir=data_dir)
    try:
        for row in store.query(sql).dicts():
            print(json.dumps(row, default=str))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
