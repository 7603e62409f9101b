"""The institution registry: who is in the sector, what they are, which addresses are theirs.

One TOML file lists the institutions (``[[institution]]`` tables). Collectors use it to know
which addresses are internal, streams to enrich alerts with subsector and region, storage to
fill the ``institutions`` table, dashboards to draw the map.

>>> reg = parse_registry({"institution": [
...     {"id": "bank-a", "name": "Alpine Bank", "subsector": "bank", "region": "north",
...      "criticality": 4, "networks": ["10.1.0.0/16", "198.51.100.0/26"]}]})
>>> reg.by_id["bank-a"].subsector, reg.institution_of("198.51.100.9")
('bank', 'bank-a')
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from finsa.errors import ConfigError
from finsa.settings import Strict, parse_config, read_document

SUBSECTORS = ("bank", "securities", "insurance", "payment", "exchange", "other")


class Institution(Strict):
    """One institution of the sector."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str
    subsector: Literal["bank", "securities", "insurance", "payment", "exchange", "other"]
    region: str = "unknown"
    criticality: int = Field(3, ge=1, le=5, description="1 minor .. 5 systemic")
    networks: list[str] = Field(default_factory=list, description="address ranges the institution owns")
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)

    @field_validator("networks")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # raises ValueError -> listed as a problem
        return value


class Registry(Strict):
    """All institutions, with look-ups by id and by address."""

    institution: list[Institution] = Field(default_factory=list)

    @property
    def by_id(self) -> dict[str, Institution]:
        return {i.id: i for i in self.institution}

    def institution_of(self, address: str) -> str | None:
        """Id of the institution owning ``address``, or None."""
        ip = ipaddress.ip_address(address)
        for inst in self.institution:
            for net in inst.networks:
                if ip in ipaddress.ip_network(net, strict=False):
                    return inst.id
        return None


def parse_registry(data: dict, source: str = "<registry>") -> Registry:
    reg = parse_config(data, Registry, source=source)
    ids = [i.id for i in reg.institution]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(source, [f"institution.id: duplicate id {d}" for d in dupes])
    return reg


def load_registry(path: str | Path) -> Registry:
    """Read and validate an institutions file."""
    return parse_registry(read_document(path), source=str(path))
