"""The sector picture: what no single institution's SOC can see.

Campaigns across institutions, early warnings, threat levels, forecasts, emergencies, enrichment
(geo, intel feeds) and the sector blocklist. Plain Python over wire records: no Faust, no Kafka.
"""
