"""Floods by victim: what arrives at one address, totalled per bin against its own baseline.

``volumetric`` (T1498.001): unanswered and ICMP packets per victim and second, with the number of
sources; ``reflection`` (T1498.002): unsolicited answers from amplifier service ports and bare
SYN-ACK/RST answers per victim. (SYN floods against one service are :mod:`finsa.detectors.synflood`.)
What they share about a victim (new members of its bin, its top sources, its alert) is
:mod:`.victims`. Both are registered in :mod:`finsa.detectors.registry` like every detector.
"""
