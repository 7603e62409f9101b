"""finsa: real-time network-security situational awareness for the financial sector.

This core package (the ``core/`` folder) holds what every role shares and nothing else: the wire
records (:mod:`finsa.wire`), the error hierarchy (:mod:`finsa.errors`), metrics
(:mod:`finsa.metrics`), strict settings (:mod:`finsa.settings`), the institutions registry
(:mod:`finsa.institutions`), batch signatures (:mod:`finsa.batchauth`), Kafka topic helpers
(:mod:`finsa.kafka`), the reader of scenario folders (:mod:`finsa.scenario_manifest`), the one
shutdown path of long-running processes (:mod:`finsa.lifecycle`) and the one file watcher
(:mod:`finsa.watch`). It imports no role.

The roles live in sub-packages: :mod:`finsa.collectors`, :mod:`finsa.streams`,
:mod:`finsa.detectors`, :mod:`finsa.sector`, :mod:`finsa.storage`, :mod:`finsa.dashboards`,
:mod:`finsa.scenario`; :mod:`finsa.app` wires whole programs and holds the command table
(``finsa`` = :func:`finsa.app.cli.main`). Data moves one way: collectors -> Kafka -> streams
(which call detectors and the sector picture) -> storage -> dashboards; the allowed imports
between roles are the table of ``tests/test_architecture.py``.
"""

__version__ = "0.1.0"
