"""Flow metering: packet batches in, bidirectional FLOW record batches out.

Decoding (``decode``, its common-case fast path ``decode_fast``, ``linklayer``), canonical keys and
key-sorted rows (``keyed_rows``), where flows end (``flow_ends``), the flow table (``flowtable``),
application hints from first payload bytes (``app_hints``, ``tls_hello``), metering profiles, and
ARP bindings seen beside the flows (``arp_bindings``). ``flowmeter.FlowMeter`` ties them together.
"""
