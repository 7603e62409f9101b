"""Labeled, reproducible traffic scenarios for several institutions of the financial sector.

``generator.generate_scenario`` writes captures, a manifest and ground truth; the other modules are its
parts (world, benign traffic, attacks, campaigns, packet encoding). Of finsa it imports the core
(:mod:`finsa.scenario_manifest` reads what it writes) and the pcap writer only.
"""
