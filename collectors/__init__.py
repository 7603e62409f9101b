"""Collectors: turn traffic at an institution's tap into signed flow batches.

Sub-packages, in the order data moves through them: ``pcap`` (capture files), ``live`` (AF_PACKET
capture), ``export`` (NetFlow/IPFIX/sFlow ingest), ``idslogs`` (Zeek and Suricata logs),
``meter`` (packets -> bidirectional FLOW records) and ``agent`` (the deployed agent: sources,
pseudonymisation, spool, signed publishing). A collector agent needs numpy and confluent-kafka
only: nothing here imports Faust, river or ClickHouse.
"""
