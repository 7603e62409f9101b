"""Streams: the Faust stream worker and the broker it runs against.

A worker consumes flow, ARP, alert and heartbeat batches, calls the detectors and the sector
picture, and writes to storage. Processing is at-least-once: offsets are committed after storage
acknowledged the writes, and storage writes are idempotent (keyed on the batch id), so a
redelivered batch does not count twice. Malformed messages go to the dead-letter topic with their
reason. The embedded Tansu broker and the gate that puts TLS and SASL/SCRAM in front of it live here.
"""
