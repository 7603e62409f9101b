"""Labeled, reproducible traffic scenarios for several institutions of the financial sector.

``generator.generate_scenario`` writes captures, a manifest and ground truth; the other modules are its
parts (world, benign traffic, attacks, campaigns, packet encoding). Imports only the pcap writer of finsa.
"""
