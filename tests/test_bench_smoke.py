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
