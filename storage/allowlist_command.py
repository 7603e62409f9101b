"""``finsa allowlist``: the operator lists, accepts or rejects analysts' allowlist proposals.

    finsa allowlist --data-dir data/run list [--status proposed]
    finsa allowlist --data-dir data/run accept ENTRY_ID
    finsa allowlist --data-dir data/run reject ENTRY_ID

A decision is stored in ``allowlist_entries`` and the audit log as the operator (user
``cli:<login name>``); every worker applies accepted entries within its poll interval
(:mod:`finsa.streams.feedback`). The same decision is a button in the web view (``/work``).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from finsa.errors import StorageError

from finsa.storage.backend import add_store_arguments, open_store
from finsa.storage.triage import ENTRY_STATES, Actor, TriageLog


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--status", choices=("", *ENTRY_STATES), default="", help="list: only entries in this state")
    parser.add_argument("action", choices=("list", "accept", "reject"))
    parser.add_argument("entry_id", nargs="?", help="the entry to accept or reject")


def main(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.entry_id:
        print(f"finsa allowlist {args.action}: give the entry id (finsa allowlist list)", file=sys.stderr)
        return 2
    store = open_store(data_dir=args.data_dir, url=args.clickhouse_url, database=args.database)
    try:
        store.migrate()
        log = TriageLog(store)
        if args.action == "list":
            for e in log.entries(args.status):
                print(f"{e['entry_id']}  {e['status']:<9} {e['institution_id']:<12} {e['detector']:<12} "
                      f"{e['entity']:<20} {e['reason']}")
            return 0
        if log.entry(args.entry_id) is None:
            print(f"finsa allowlist: no entry {args.entry_id}", file=sys.stderr)
            return 1
        actor = Actor(f"cli:{getpass.getuser()}", "operator", "operator")
        entry = log.decide_entry(actor, args.entry_id, args.action == "accept")
        print(f"{entry['entry_id']} {entry['status']}: {entry['entity']} / {entry['detector']} at {entry['institution_id']}")
        return 0
    except StorageError as exc:
        print(f"finsa allowlist: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
