"""Flow export ingest: NetFlow v5/v9, IPFIX and sFlow v5 datagrams decoded into FLOW record batches, and their UDP receiver."""
