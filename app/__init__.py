"""The app layer: whole programs wired from the roles (``finsa run``, ``finsa worker``, ``finsa detect``,
``finsa backtest``), the one builder of a stream worker that ``run`` and ``worker`` share
(:mod:`finsa.app.stream_worker`, with the worker's strict config in :mod:`finsa.app.worker_config`)
and the table of commands. The only package that may import across roles against the data flow
(collectors -> Kafka -> streams -> storage -> dashboards).
"""
