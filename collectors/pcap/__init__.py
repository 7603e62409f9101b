"""Packet captures: pcap and pcapng reading in chunks of packets that share one buffer, record framing, and a pcap writer."""
