"""The ``finsa`` command line.

Each sub-command lives in the package of its role and is imported only when it runs, so a
collector-only install (no Faust, river or ClickHouse) still runs ``finsa collect`` and
``finsa flows``. A command module exposes ``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from finsa import __version__

#: command -> (module, one-line help). Names and flags here are a public interface.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("finsa.app.run", "run everything on one machine (broker, worker, store, collector, web view)"),
    "worker": ("finsa.app.worker", "run a stream worker against a Kafka broker"),
    "flows": ("finsa.collectors.flows_command", "meter a capture offline and print its flows"),
    "collect": ("finsa.collectors.collect_command", "run the collector agent: meter captures and publish flow batches"),
    "scenario": ("finsa.scenario.scenario_command", "write a labeled multi-institution traffic scenario"),
    "detect": ("finsa.app.detect_command", "run collectors and detectors offline on captures, print alerts"),
    "eval": ("finsa.app.eval_command", "detection scorecard: verdicts on labelled captures, alerts on benign ones"),
    "backtest": ("finsa.app.backtest_command", "score detections on a scenario against its ground truth"),
    "query": ("finsa.storage.query_command", "run SQL on a finsa store"),
    "storage": ("finsa.storage.storage_command", "storage administration: migrate, tenants"),
    "notify": ("finsa.notify.notify_command", "notifications config: check"),
    "allowlist": ("finsa.storage.allowlist_command", "analysts' allowlist proposals: list, accept, reject"),
    "detectors": ("finsa.detectors.detectors_command", "detector configuration: check"),
    "dashboards": ("finsa.dashboards.dashboards_command", "Grafana provisioning: push, export"),
    "report": ("finsa.dashboards.report_command", "write the sector situation report"),
}


def _usage() -> str:
    lines = [f"finsa {__version__}: network-security situational awareness for the financial sector", "",
             "usage: finsa COMMAND [options]   (finsa COMMAND --help for a command's options)", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"finsa {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"finsa: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, help_ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("finsa"):
            print(f"finsa {name}: needs the Python package {exc.name!r}, which is not installed "
                  f"(install the matching extra, e.g. pip install 'finsa[all]')", file=sys.stderr)
            return 3
        raise
    parser = argparse.ArgumentParser(prog=f"finsa {name}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`finsa query ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
