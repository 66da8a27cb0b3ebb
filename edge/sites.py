"""edge room: the named sites of the simulated fleet, real cities with their coordinates.

Pure data. A simulated fleet of N sites takes the first N; beyond the list the names repeat
with a suffix (`munich-2`) so any N works and the names stay valid contract names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    city: str
    country: str
    lat: float
    lon: float


SITES: tuple[Site, ...] = (
    Site("munich", "Munich", "DE", 48.1372, 11.5756),
    Site("lyon", "Lyon", "FR", 45.7640, 4.8357),
    Site("rotterdam", "Rotterdam", "NL", 51.9244, 4.4777),
    Site("turin", "Turin", "IT", 45.0703, 7.6869),
    Site("gdansk", "Gdańsk", "PL", 54.3520, 18.6466),
    Site("porto", "Porto", "PT", 41.1579, -8.6291),
    Site("graz", "Graz", "AT", 47.0707, 15.4395),
    Site("aarhus", "Aarhus", "DK", 56.1629, 10.2039),
    Site("bilbao", "Bilbao", "ES", 43.2630, -2.9350),
    Site("brno", "Brno", "CZ", 49.1951, 16.6068),
    Site("tampere", "Tampere", "FI", 61.4978, 23.7610),
    Site("ghent", "Ghent", "BE", 51.0543, 3.7174),
)


def fleet_sites(count: int) -> list[Site]:
    """`count` distinct sites, the named ones first."""
    if count < 1:
        raise ValueError("a fleet needs at least one site")
    sites: list[Site] = []
    for index in range(count):
        base = SITES[index % len(SITES)]
        round_ = index // len(SITES)
        if round_ == 0:
            sites.append(base)
        else:
            name = f"{base.name}-{round_ + 1}"
            sites.append(Site(name, base.city, base.country, base.lat, base.lon))
    return sites
