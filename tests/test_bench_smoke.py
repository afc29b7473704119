"""`make bench` keeps working: the outbound benchmark runs end to end at a smoke-test size, with
both its runs (the backlog through a web-only node, and live) and the ceiling.

The figures at this size mean nothing; the point is that the benchmark's code, the hub processes
it drives and the report still fit together.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_the_outbound_benchmark_runs_both_runs_and_reports_them() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "outbound", "--quick", "--no-save"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in ("backlog delivered/s", "send API accepted/s", "live: provider sends/s", "ceiling"):
        assert figure in done.stdout, done.stdout
    assert "CRASHED" not in done.stdout


def test_the_outbound_ratio_is_taken_against_the_uncapped_ceiling() -> None:
    """A ceiling is never capped: a hub held to 1,000/s by the channel's rate limit beside a
    client that drives the provider at 2,250/s is at 0.44 of it, not 1.0."""
    from bench.outbound import held_to_ceiling

    backlog = held_to_ceiling({"backlog_per_s": 1_000.0, "provider_per_s": 950.0}, 2_250.0)
    assert backlog["held_to_target"] == "backlog"
    assert round(backlog["ratio"], 2) == 0.44 and round(backlog["live_ratio"], 2) == 0.42
    assert backlog["target_met"] is False
    assert "uncapped" in backlog["target"]
    live = held_to_ceiling({"provider_per_s": 900.0}, 1_000.0)
    assert live["held_to_target"] == "live" and live["ratio"] == 0.9 and live["target_met"] is True
