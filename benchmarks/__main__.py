"""``python -m benchmarks [NAME ...] [--quick] [--repeat N]``: run workloads, print, write JSON.

Workloads: presign, pipeline, listing, peers, server, cli-startup (all by default). Each prints
its table and writes ``benchmarks/results/<name>.json`` (+ PNG plots); ``--quick`` uses tiny
sizes as a smoke test. A workload that crashes is reported and the others still run; the exit
code is 1 when any workload crashed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from benchmarks._common import RESULTS_DIR, SCRATCH_DIR, RunConfig, write_report

WORKLOADS = {
    "presign": "benchmarks.presign",
    "pipeline": "benchmarks.pipeline",
    "listing": "benchmarks.listing",
    "peers": "benchmarks.peers",
    "server": "benchmarks.server",
    "cli-startup": "benchmarks.cli_startup",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(WORKLOADS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke)")
    parser.add_argument("--repeat", type=int, default=None, help="samples per timing (3; quick 1)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--scratch-dir", type=Path, default=SCRATCH_DIR,
                        help="emulator data, sample files, the reference venv")  # fmt: skip
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    # Measured children should run as users run them: with bytecode caches (pip writes them at
    # install time). Some CI/dev shells set PYTHONDONTWRITEBYTECODE, which would make every
    # child process recompile its imports and dominate start-up times.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    # SIGTERM unwinds like Ctrl-C, so servers and measured commands are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.dont_write_bytecode = False
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    config = RunConfig(quick=args.quick, repeat=max(repeat, 1), results_dir=args.results_dir,
                       scratch_dir=args.scratch_dir.resolve())  # fmt: skip
    crashed: list[str] = []
    for name in args.names or list(WORKLOADS):
        started = time.perf_counter()
        print(f"--- {name} ...", flush=True)
        try:
            module = importlib.import_module(WORKLOADS[name])
            report = module.run(config)
        except Exception:
            traceback.print_exc()
            crashed.append(name)
            continue
        path = write_report(report)
        print(report.table())
        print(f"({time.perf_counter() - started:.1f}s) -> {path}\n", flush=True)
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
