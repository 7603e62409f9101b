"""Features of DNS names for the tunnelling and DGA detectors, computed once per distinct name.

* :func:`registered_domain` — the registrable part of a name without a public-suffix list: the
  last two labels, three under a two-letter country code whose second level is a generic one
  (``co.uk``, ``com.au``); a name whose last label cannot be a TLD (digits, too long) is pooled
  under ``"(bad-tld)"``, so a tunnel that invents its whole name still groups per client.
* :func:`entropy_bits` — Shannon entropy of the characters, bits per character.
* :func:`dga_score` — how unlike a pronounceable name a second-level label is, 0..1: few of the
  common English letter pairs, long consonant runs, letters mixed with digits, high entropy.
* :func:`name_features` — the columns of a batch's ``dns_query`` (or any name column), through a
  bounded cache keyed by the distinct names (a batch repeats a few names many times).

>>> registered_domain("a.b.www.example.co.uk"), registered_domain("x.19e4d098dc8c618f8d81cf")
('example.co.uk', '(bad-tld)')
>>> dga_score("wikipedia") < 0.5 < dga_score("xjwqzkvtrpbn")
True
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter

import numpy as np

__all__ = ["registered_domain", "entropy_bits", "dga_score", "name_features", "NameFeatures",
           "BAD_TLD", "string_hash"]

BAD_TLD = "(bad-tld)"
_GENERIC_SLD = frozenset("co com net org gov edu ac or ne go gob mil nic ltd plc".split())
_TLD = re.compile(r"^(?:[a-z]{2,24}|xn--[a-z0-9-]{2,59})$")
#: The most frequent letter pairs of English text (a pronounceable name is made of them).
_COMMON_BIGRAMS = frozenset(
    "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve "
    "co me de hi ri ro ic ne ea ra ce li ch ll be ma si om ur ca el ta la ns di fo ho pe ec pr no "
    "ct us ac ot il tr ly nc et ut ss so rs un lo wa ge ie wh ee wi em ad ol rt po we na ul ni ts "
    "mo ow pa im mi ai sh ir su id os iv ia am fi ci vi pl ig tu ev ld ry mp fe bl ab gh ty op wo "
    "sa ay ex ke fr oo av ag if ap gr od bo sp rd do uc bu ei ov by rm ep tt oc fa ef cu rn sc gi "
    "da yo cr cl du ga qu ue ff ba ey ls va um pp ua up lu go ht ru ug ds lt pi rc rr eg au ck ew "
    "mu br bi pt ak pu ui rg ib tl ny ki rk ys ob mm fu ph og ms ye ud mb ip ub oi rl gu dr hr cc "
    "tw ft wn nu af hu nn eo vo rv nf xp gn sm fl iz ok nl my gl aw ju oa eq sy sl ps jo lf nv je "
    "nk kn gs dy hy ze ks xt bs ik dd cy rp sk xi oe oy ws lv dl rf eu dg wr xa yi nm eb rb tm xc "
    "eh tc gy ja hn yp za eye".split())
_VOWELS = frozenset("aeiouy")
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]+")


def registered_domain(name: str) -> str:
    """The registrable domain of ``name`` (see the module docstring); ``""`` for an empty name."""
    labels = [x for x in name.lower().rstrip(".").split(".") if x]
    if not labels:
        return ""
    if not _TLD.match(labels[-1]):
        return BAD_TLD
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _GENERIC_SLD:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def entropy_bits(text: str) -> float:
    """Shannon entropy of the characters of ``text``, in bits per character (0 for "")."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def dga_score(label: str) -> float:
    """0..1: how machine-generated a second-level label looks (labels under 8 characters score 0)."""
    label = label.lower().replace("-", "")
    if len(label) < 8:
        return 0.0
    pairs = [label[i:i + 2] for i in range(len(label) - 1)]
    letters = sum(ch.isalpha() for ch in label)
    common = sum(p in _COMMON_BIGRAMS for p in pairs) / len(pairs)
    run = max((len(m) for m in _CONSONANT_RUN.findall(label)), default=0)
    vowels = sum(ch in _VOWELS for ch in label) / max(letters, 1)
    mixed = 0 < letters < len(label) and len(label) - letters >= 2
    points = (1.5 * (common < 0.35) + (common < 0.2) + (run >= 4) + 0.5 * (run >= 6)
              + (vowels < 0.22) + 0.5 * mixed + 0.5 * (entropy_bits(label) >= 3.3) + 0.5 * (len(label) >= 14))
    return min(1.0, points / 4.0)


class NameFeatures:
    """Per-name features, cached: domain, subdomain length, longest label, entropy, DGA score."""

    def __init__(self, max_cache: int = 50_000) -> None:
        self.max_cache = max_cache
        self._cache: dict[str, tuple[str, int, int, float, float, float]] = {}

    def one(self, name: str) -> tuple[str, int, int, float, float, float]:
        """(domain, subdomain length, longest label, subdomain entropy, DGA score, plain) of a name;
        ``plain`` is 1.0 for service and reputation look-ups (a label starting with ``_``, or four
        numeric labels: an address written in the name)."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        domain = registered_domain(name)
        labels = [x for x in name.lower().rstrip(".").split(".") if x]
        keep = 2 if domain == BAD_TLD else domain.count(".") + 1
        sub = "".join(labels[:-keep]) if len(labels) > keep else ""
        if domain == BAD_TLD:
            sub = "".join(labels)
        sld = labels[-keep] if domain != BAD_TLD and len(labels) >= keep else (labels[0] if labels else "")
        plain = any(x.startswith("_") for x in labels) or sum(x.isdigit() for x in labels) >= 4
        out = (domain, len(sub), max((len(x) for x in labels), default=0), entropy_bits(sub), dga_score(sld),
               float(plain))
        if len(self._cache) >= self.max_cache:
            self._cache.clear()
        self._cache[name] = out
        return out

    def columns(self, names: np.ndarray) -> dict[str, np.ndarray]:
        """Feature columns for an object array of names (computed once per distinct name)."""
        uniq, inverse = np.unique(names.astype(str), return_inverse=True)
        rows = [self.one(str(u)) for u in uniq]
        domain = np.array([r[0] for r in rows] or [""], dtype=object)
        feats = np.array([r[1:] for r in rows] or [(0, 0, 0.0, 0.0, 0.0)], dtype=np.float64)
        inv = inverse.ravel()
        return {"domain": domain[inv], "sub_len": feats[inv, 0], "max_label": feats[inv, 1],
                "sub_entropy": feats[inv, 2], "dga": feats[inv, 3], "plain": feats[inv, 4] > 0, "name_index": inv,
                "names": uniq}

    def __getstate__(self) -> dict:
        return {"max_cache": self.max_cache, "_cache": {}}  # a cache: not worth checkpointing


def name_features(names: np.ndarray, cache: NameFeatures | None = None) -> dict[str, np.ndarray]:
    """Feature columns of ``names`` (see :meth:`NameFeatures.columns`)."""
    return (cache or NameFeatures()).columns(names)


def string_hash(values: np.ndarray) -> np.ndarray:
    """A stable uint64 hash per string of an object array (computed once per distinct string).

    >>> string_hash(np.array(["a", "b", "a"], dtype=object)).tolist()[0] == string_hash(np.array(["a"], dtype=object)).tolist()[0]
    True
    """
    if not len(values):
        return np.zeros(0, dtype=np.uint64)
    uniq, inverse = np.unique(values.astype(str), return_inverse=True)
    table = np.array([int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "little")
                      for u in uniq.tolist()], dtype=np.uint64)
    return table[inverse.ravel()]
