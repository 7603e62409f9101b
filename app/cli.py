"""The ``finsa`` command line.

Each sub-command lives in the package of its role and is imported only when it runs (by a small
loader function per command), so a collector-only install (no Faust, river or ClickHouse) still
runs ``finsa collect`` and ``finsa flows``; a command whose extra is missing exits 3 saying which
package to install. A command module exposes ``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import ModuleType
from typing import Callable, NoReturn

from finsa import __version__

def _run() -> ModuleType:
    from finsa.app import run
    return run


def _worker() -> ModuleType:
    from finsa.app import worker
    return worker


def _flows() -> ModuleType:
    # numpy's OpenBLAS starts a thread pool when numpy is imported, which metering never uses; its
    # start-up costs ~0.05 CPU s per run of this one-shot command. Set before numpy's import; a
    # value the user set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from finsa.collectors import flows_command
    return flows_command


def _collect() -> ModuleType:
    from finsa.collectors import collect_command
    return collect_command


def _scenario() -> ModuleType:
    from finsa.scenario import scenario_command
    return scenario_command


def _detect() -> ModuleType:
    from finsa.app import detect_command
    return detect_command


def _eval() -> ModuleType:
    from finsa.app import eval_command
    return eval_command


def _backtest() -> ModuleType:
    from finsa.app import backtest_command
    return backtest_command


def _query() -> ModuleType:
    from finsa.storage import query_command
    return query_command


def _storage() -> ModuleType:
    from finsa.storage import storage_command
    return storage_command


def _notify() -> ModuleType:
    from finsa.notify import notify_command
    return notify_command


def _allowlist() -> ModuleType:
    from finsa.storage import allowlist_command
    return allowlist_command


def _detectors() -> ModuleType:
    from finsa.detectors import detectors_command
    return detectors_command


def _dashboards() -> ModuleType:
    from finsa.dashboards import dashboards_command
    return dashboards_command


def _report() -> ModuleType:
    from finsa.dashboards import report_command
    return report_command


#: command -> (loader, one-line help). Names and flags here are a public interface. Each loader
#: imports its command module only when that command runs (a real import statement, so an import
#: check reading the source sees every edge).
COMMANDS: dict[str, tuple[Callable[[], ModuleType], str]] = {
    "run": (_run, "run everything on one machine (broker, worker, store, collector, web view)"),
    "worker": (_worker, "run a stream worker against a Kafka broker"),
    "flows": (_flows, "meter a capture offline and print its flows"),
    "collect": (_collect, "run the collector agent: meter captures and publish flow batches"),
    "scenario": (_scenario, "write a labeled multi-institution traffic scenario"),
    "detect": (_detect, "run collectors and detectors offline on captures, print alerts"),
    "eval": (_eval, "detection scorecard: verdicts on labelled captures, alerts on benign ones"),
    "backtest": (_backtest, "score detections on a scenario against its ground truth"),
    "query": (_query, "run SQL on a finsa store"),
    "storage": (_storage, "storage administration: migrate, tenants"),
    "notify": (_notify, "notifications config: check"),
    "allowlist": (_allowlist, "analysts' allowlist proposals: list, accept, reject"),
    "detectors": (_detectors, "detector configuration: check"),
    "dashboards": (_dashboards, "Grafana provisioning: push, export"),
    "report": (_report, "write the sector situation report"),
}


#: Commands that run until stopped: they install finsa.lifecycle's handlers as they start; a
#: SIGTERM before that (while the command's modules are still being imported) ends them with 0.
LONG_RUNNING = frozenset({"run", "worker", "collect"})


def _stopped_while_starting(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _usage() -> str:
    lines = [f"finsa {__version__}: network-security situational awareness for the financial sector", "",
             "usage: finsa COMMAND [options]   (finsa COMMAND --help for a command's options)", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


#: One-shot commands whose process, when ``main`` reads the process's own command line, ends as
#: soon as the command returns (standard streams flushed): the interpreter's teardown (freeing
#: every module's objects, numpy's and LLVM's state, about 0.02-0.03 CPU s) is work a finished
#: command's process does not need. Called with an argument list (tests, embedding), ``main``
#: returns as usual.
ONE_SHOT = frozenset({"flows"})


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    code = _dispatch(args)
    if argv is None and args and args[0] in ONE_SHOT:
        _end_process(code)
    return code


def _end_process(code: int) -> NoReturn:
    """End the process with ``code`` now: log handlers and standard streams flushed first."""
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a closed stream: nothing to flush to
            pass
    os._exit(code)


def _dispatch(argv: list[str]) -> int:
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
    load, help_ = COMMANDS[name]
    if name in LONG_RUNNING:
        signal.signal(signal.SIGTERM, _stopped_while_starting)
    try:
        module = load()
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
    finally:
        if name in LONG_RUNNING:  # stopped: a signal while the interpreter winds down has nothing left to
            for sig in (signal.SIGTERM, signal.SIGINT):  # stop (Python would reset our handlers to the
                signal.signal(sig, signal.SIG_IGN)  # default, which kills: exit status -2 instead of 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
