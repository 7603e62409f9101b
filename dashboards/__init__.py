"""Dashboards: the sector threat view, served by finsa and provisioned into Grafana.

Panels read storage only; they never talk to Kafka or the detectors.
"""
