"""Collectors: turn traffic into flow batches at an institution's tap.

They read pcap/pcapng captures (and, later, live interfaces and flow export), meter
bidirectional flows with idle and active timeouts, and publish batches of
:data:`finsa.wire.FLOW` records to Kafka. A collector agent needs numpy and confluent-kafka only:
nothing here imports Faust, river or ClickHouse.
"""
