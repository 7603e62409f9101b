"""Collectors: turn traffic at an institution's tap into signed flow batches.

Sub-packages, in the order data moves through them: ``pcap`` (capture files), ``live`` (AF_PACKET
capture), ``export`` (NetFlow/IPFIX/sFlow ingest), ``idslogs`` (Zeek and Suricata logs),
``meter`` (packets -> bidirectional FLOW records) and ``agent`` (the deployed agent: sources,
pseudonymisation, spool, signed publishing). ``replay`` replays captures in capture time;
``flows_command`` and ``collect_command`` are ``finsa flows`` and ``finsa collect``. A collector
agent needs numpy and confluent-kafka only: nothing here imports Faust, river or ClickHouse, or
another role.
"""
