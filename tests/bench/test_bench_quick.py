"""``python -m benchmarks --quick`` runs the offline workloads and writes well-formed JSON.

A smoke test of the harness, not of speed: no timing is asserted. ``peers`` is left out: it
installs inference-cli from PyPI into a venv first (about a minute on its own).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = ("presign", "pipeline", "listing", "server", "cli-startup")
KEYS = {
    "workload", "title", "quick", "repeat", "date", "durationSeconds", "machine", "versions",
    "parameters", "cases", "ratios", "failures", "pending", "notes", "plots",
}  # fmt: skip
CASE_KEYS = {"subject", "metric", "unit", "samples", "median", "min", "max"}


@pytest.mark.timeout(400)
def test_quick_run_writes_results(tmp_path: Path) -> None:
    results, scratch = tmp_path / "results", tmp_path / "scratch"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", *WORKLOADS,
         "--results-dir", str(results), "--scratch-dir", str(scratch)],
        cwd=REPO, capture_output=True, text=True, timeout=380, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in WORKLOADS:
        data = json.loads((results / f"{name}.json").read_text())
        assert data.keys() >= KEYS, name
        assert data["workload"] == name
        assert data["quick"] is True
        assert data["machine"]["cpuCount"] >= 1
        assert data["failures"] == [], (name, data["failures"])
        assert data["cases"], name
        for case in data["cases"]:
            assert case.keys() >= CASE_KEYS
            assert case["samples"], case
            assert case["min"] <= case["median"] <= case["max"]
        for ratio in data["ratios"]:
            assert {"name", "value", "meaning"} <= ratio.keys()
        for plot in data["plots"]:
            assert (results / plot).stat().st_size < 200_000
        assert f"== {name}" in done.stdout
    ratios = {
        r["name"]: r["value"]
        for name in WORKLOADS
        for r in json.loads((results / f"{name}.json").read_text())["ratios"]
    }
    assert ratios["s3: batchflow / baseline"] is not None
    assert ratios["ingest / listing (process wall)"] is not None
