"""Streams: Faust workers that consume flow batches, call the detectors and write to storage.

Processing is at-least-once: offsets are committed after storage acknowledged the writes, and
storage writes are idempotent (keyed on the batch id), so a redelivered batch does not count
twice. Malformed messages go to the dead-letter topic with their reason. This package also runs
the embedded default (``finsa run``): the Tansu broker, a worker, the store and the web view.
"""
