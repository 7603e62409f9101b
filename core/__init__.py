"""finsa: real-time network-security situational awareness for the financial sector.

This core package holds what every role shares: the wire records (:mod:`finsa.wire`), the
command line (:mod:`finsa.app.cli`), metrics (:mod:`finsa.metrics`) and strict settings
(:mod:`finsa.settings`). The roles live in sub-packages: :mod:`finsa.collectors`,
:mod:`finsa.streams`, :mod:`finsa.detectors`, :mod:`finsa.storage`, :mod:`finsa.dashboards`.
Data moves one way: collectors -> Kafka -> streams (which call detectors) -> storage -> dashboards.
"""

__version__ = "0.1.0"
