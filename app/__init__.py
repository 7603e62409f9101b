"""The app layer: whole programs wired from the roles (``finsa run``, ``finsa worker``, ``finsa detect``,
``finsa backtest``) and the table of commands. The only package that may import across roles against
the data flow (collectors -> Kafka -> streams -> storage -> dashboards).
"""
