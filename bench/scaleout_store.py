"""The store process of ``bench scaleout``: a chdb store on disk, migrated, served over the
ClickHouse HTTP interface. Prints its URL on stdout, serves until its stdin closes.

    python -m bench.scaleout_store DIR
"""

from __future__ import annotations

import sys


def main(folder: str) -> int:
    from finsa.storage.chdb_backend import ChdbStore
    from finsa.storage.clickhouse_http import ClickHouseHTTPEndpoint

    store = ChdbStore(folder)
    store.migrate()
    endpoint = ClickHouseHTTPEndpoint(store).start()
    print(endpoint.url, flush=True)
    sys.stdin.read()  # until the bench closes it
    endpoint.stop()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
