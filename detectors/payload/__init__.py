"""Detectors that read what the collector saw in payloads (FLOW v2's ``app_markers`` and
``http_requests``): exploitation and the shell after it (:mod:`.exploits`), executables received
and ICMP payload channels (:mod:`.delivery`), remote service creation over SMB
(:mod:`.remote_service`), HTTP check-ins and drive-by delivery (:mod:`.httpc2`); :mod:`.markers`
reads the marker list, :mod:`.detector` is their common base (one alert per flow, once per pair and window). Flow exports and IDS logs carry few or no markers: these stay silent there.
"""
