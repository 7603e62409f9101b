"""Dashboards: the sector threat view, served by finsa and provisioned into Grafana.

Panels read storage (and take the threat-level scale from :mod:`finsa.sector.levels`); they never
talk to Kafka or the detectors. ``panels``/``flow_panels`` define the panels once (SQL, kind, unit),
``threat`` the level SQL; ``webview``/``page``/``login``/``auth``/``users``/``reads``/``sectormap``
serve finsa's own view, ``grafana*`` and ``provision`` the Grafana provisioning, ``report*`` the
periodic report; the sub-package ``soc`` the analyst's pages (alert page, flow search, triage).
"""
