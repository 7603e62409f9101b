"""Logs of the sensors institutions already run (Zeek, Suricata EVE): followed across rotations and restarts, mapped to FLOW and ALERT records.

``growing_file`` follows one growing file, ``rotating_files`` a set of files across rotations,
``read_positions`` keeps where each was read up to; ``zeek`` and ``suricata_eve`` map lines to records.
"""
