"""Notifications: early warnings, emergencies and severe alerts sent where institutions work.

:class:`~finsa.notify.notifier.Notifier` takes the sector picture's output (warning, emergency
and alert batches), routes each record by a strict config file (:mod:`finsa.notify.config`:
per institution, per severity, per kind) to receivers -- a webhook (JSON signed with HMAC-SHA256),
e-mail (SMTP with STARTTLS) or syslog (RFC 5424 carrying CEF, over UDP or TCP) -- through a
persistent on-disk outbox (:mod:`finsa.notify.outbox`): a message has a stable id made from the
record it reports and the receiver, is stored before it is sent, retried with back-off while its
receiver is down, and marked sent once delivered, so nothing is lost and a graceful restart
never sends it twice. ``finsa notify --check FILE`` validates a config.

This package imports only finsa's core (wire records, settings, metrics, institutions); the app
layer wires it to a worker.
"""
