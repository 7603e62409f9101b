"""The sector picture: what no single institution's SOC can see.

``picture`` ties together campaigns across institutions (``campaigns``), early warnings
(``early_warning``, ``forecast``), threat levels (``levels``: the one home of the level scale and
formula, also rendered as the dashboards' SQL), emergencies (``emergencies``), enrichment (``enrich``,
``geo``, ``intel_feeds``) and the indicators it shares (``indicators``, served by
``indicators_http``); ``rows`` turns its updates into wire batches. Plain Python over wire records:
no Faust, no Kafka; it may import detectors and storage only.
"""
