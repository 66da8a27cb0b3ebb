"""`python -m bench.outage` with a small N: readings published while influxd is down are all
stored once it is back, and the table says so. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

READINGS = 3000


def test_outage_bench_stores_every_reading_published_while_influxdb_was_down(
    tmp_path: Path,
) -> None:
    output = tmp_path / "outage.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.outage", "--readings", str(READINGS),
         "--publishers", "2", "--json", str(output)],
        capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "stopping influxd" in proc.stderr
    assert "| stored count" in proc.stdout
    result = json.loads(output.read_text())["outage"]
    assert result["stored"] == READINGS
    assert result["problems"] == []
    assert result["journal_peak_rows"] >= READINGS
    assert result["journal_peak_bytes"] > 0
    assert result["ingest_peak_rss_mb"] > 0
    assert result["mosquitto_peak_rss_mb"] > 0
