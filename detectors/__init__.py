"""Detectors: online anomaly and attack detection over batches of flows.

Contract: a detector is constructed inert from its parameters, learns and scores online on
:class:`finsa.wire.RecordBatch` flow batches via ``process(batch) -> list of alert rows``, keeps
its state picklable, and is deterministic for a seed. High scores mean anomalous. This package
knows nothing of Kafka, Faust or ClickHouse.

Modules: ``base`` (the contract, alert rows, deterministic alert ids, per-window dedup),
``features`` (vectorised per-entity features, keyed state, damped statistics), ``baseline``,
``netsets`` and ``dnsnames`` (shared helpers), one module per detector (``portscan`` T1046,
``probescan`` T1046 (stealth, UDP, IP-protocol and slow scans), ``synflood`` T1499.001,
``floods`` (a sub-package: ``volumetric`` T1498.001, ``reflection`` T1498.002), ``bruteforce`` T1110, ``anomaly`` with river's Half-Space Trees,
``dnstunnel`` with its DGA detector, ``beaconing``, ``exfiltration``, ``lateral``, ``webattack``,
``intel`` on indicator feeds, ``arpspoof`` on ARP bindings), ``registry`` (name -> class, the one
place to add a detector), ``config`` / ``allowlist`` / ``reload`` (the detectors file: per-detector
settings, suppressions, reload on change), ``detectors_command`` (CLI) and ``engine``
(``DetectionEngine().process(flows) -> ALERT batch``, what the stream layer calls).
Detectors use flow time only, never the wall clock, and keep state per institution.
"""
