"""shared room: Flux query files, read by name.

A room keeps the queries only it runs in its own `queries/` folder; the queries two rooms run
alike (the fleet's state reads, alert actions, retirements, silences, the ingest heartbeat and
the Models page's reads that the alerter's model rules share) live once, in
`shared/queries/`, so the dashboard and the alerter always run the same text. Touches: the
package's own query files (read only).
"""

from __future__ import annotations

from pathlib import Path

SHARED_QUERIES_DIR = Path(__file__).with_name("queries")


def read_flux(own_dir: Path, name: str) -> str:
    """`name`.flux from the room's own folder, else from the shared one."""
    for folder in (own_dir, SHARED_QUERIES_DIR):
        path = folder / f"{name}.flux"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"no Flux query {name!r} in {own_dir} or {SHARED_QUERIES_DIR}")
