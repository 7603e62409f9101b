"""Flow metering: packet batches in, bidirectional FLOW record batches out.

Decoding (``decode``: one compiled loop, ``decode_loop``, over ``linklayer``), canonical keys and
their hashes (``key_hash``), key-sorted rows (``keyed_rows``, written by ``row_merge``), per-flow
totals (``segment_sums``), where flows end (``flow_ends``), the flow table (``flowtable``),
application hints from first payload bytes (``app_hints``, ``tls_hello``), metering profiles, and
ARP bindings seen beside the flows (``arp_bindings``). ``flowmeter.FlowMeter`` ties them together.
"""
