"""`edgewatch bench --quick` runs end to end and writes a complete, consistent results file.

No timing assertions: the figures depend on the machine. What a user relies on is that every
scenario ran, that each verified its stored counts, and that the numbers are usable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import SCENARIOS

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

QUERY_RANGES = {"24 h", "7 d", "30 d", "90 d"}


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_quick_bench_writes_a_valid_results_file(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    markdown = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "edgewatch.cli", "bench", "--quick",
         "--output", str(output), "--markdown", str(markdown)],
        capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "readings are stored" in proc.stderr  # progress while waiting for counts
    results = json.loads(output.read_text())

    assert results["schema_version"] == 1
    assert results["mode"] == "quick"
    assert results["ok"] is True
    messages = results["config"]["messages"]
    assert messages > 0

    for name in ("database", "broker"):
        ceiling = results["ceilings"][name]
        assert ceiling["ok"] and ceiling["count_verified"], ceiling
        assert _positive(ceiling["messages_per_s"])

    assert set(results["scenarios"]) == set(SCENARIOS)
    for name in SCENARIOS:
        scenario = results["scenarios"][name]
        assert scenario["ok"], scenario
        throughput, latency = scenario["throughput"], scenario["latency"]
        assert throughput["count_verified"] and throughput["stored"] == messages
        assert latency["count_verified"] and latency["stored"] == latency["messages"]
        for value in (
            throughput["messages_per_s"],
            throughput["cpu_seconds"],
            latency["p50_ms"],
            latency["p99_ms"],
            scenario["peak_rss_mb"],
        ):
            assert _positive(value), (name, value)
        assert latency["samples"] == latency["probes"] > 0
    assert len(results["scenarios"]["edgewatch_x2"]["peak_rss_mb_each"]) == 2

    queries = results["queries"]["results"]
    trends = [q for q in queries if q["query"] == "trends"]
    assert {q["range"] for q in trends} == QUERY_RANGES
    fleet = [q for q in queries if q["query"] == "fleet_overview"]
    assert len(fleet) == 1 and fleet[0]["devices"] == fleet[0]["expected_devices"]
    for q in queries:
        assert q["rows"] > 0, q
        assert _positive(q["median_ms"]) and _positive(q["p95_ms"])

    for ratio in ("edgewatch_over_telegraf", "edgewatch_over_database_ceiling",
                  "edgewatch_over_broker_ceiling"):  # fmt: skip
        assert _positive(results["ratios"][ratio])

    text = markdown.read_text()
    assert "edgewatch bench --quick" in text
    assert results["machine"]["cpu_model"] in text
