"""Detectors: online anomaly and attack detection over batches of flows.

Contract: a detector is constructed inert from its parameters, learns and scores online on
:class:`finsa.wire.RecordBatch` flow batches via ``process(batch) -> list of alert rows``, keeps
its state picklable, and is deterministic for a seed. High scores mean anomalous. This package
knows nothing of Kafka, Faust or ClickHouse.
"""
