"""Workload ``cli-startup``: ``batchflow --help`` vs ``inference --help`` (reference venv).

Both are the installed console scripts, each run once untimed first (so both have bytecode
caches, as after a pip install), then N timed runs: wall time and peak RSS per run. ``--quick``
uses the reference venv only if an earlier run installed it (the install needs PyPI and ~1 min);
without it only batchflow is measured and the JSON says so.
"""

from __future__ import annotations

from benchmarks._common import Case, Report, RunConfig
from benchmarks._procs import BIN, run_measured
from benchmarks.peers import ensure_refvenv

__all__ = ["run"]


def run(config: RunConfig) -> Report:
    runs = 2 if config.quick else 10
    report = Report("cli-startup", "CLI start-up: --help", config)
    report.parameters = {"runsPerCommand": runs, "warmup": 1}
    commands = {"batchflow --help": [str(BIN / "batchflow"), "--help"]}
    ref_bin = config.scratch_dir / "refvenv" / "bin"
    if config.quick and not (ref_bin / "inference").exists():
        report.notes.append(
            "quick mode: the reference venv is not installed, so 'inference --help' was not "
            "measured (run `python -m benchmarks peers` or a full run once to install it)"
        )
    else:
        bin_dir, install = ensure_refvenv(config.scratch_dir)
        report.parameters["referenceVenv"] = install
        if bin_dir is None:
            report.fail("inference-cli install", "pip install failed", **install.get("error", {}))
        else:
            commands["inference --help"] = [str(bin_dir / "inference"), "--help"]
    for subject, argv in commands.items():
        warm = run_measured(argv)
        if not warm.ok:
            report.fail(subject, "exited non-zero", **warm.failure())
            continue
        measured = [run_measured(argv) for _ in range(runs)]
        bad = [m for m in measured if not m.ok]
        if bad:
            report.fail(subject, "exited non-zero", **bad[0].failure())
            continue
        report.add(Case(subject, "wall", "s", [m.wall for m in measured]))
        report.add(Case(subject, "peak RSS", "MiB", [m.peak_rss / 2**20 for m in measured]))
    for metric in ("wall", "peak RSS"):
        report.ratio(
            f"{metric}: batchflow / inference",
            report.find("batchflow --help", metric),
            report.find("inference --help", metric),
            "<1: batchflow starts faster / smaller",
        )
    return report
