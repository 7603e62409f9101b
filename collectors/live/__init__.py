"""Live capture on a Linux interface: AF_PACKET sockets with TPACKET_V3 rings, classic BPF filters, network namespaces."""
