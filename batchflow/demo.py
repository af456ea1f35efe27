"""``make demo``: the main job end to end on the embedded default, as a user would type it.

Generates a sample set (a few thousand images in nested folders and two short videos), then runs
the real CLI: ``ingest`` -> ``run`` (built-in ``image-metadata``, and a video job) -> ``poll`` ->
``export``, against the local service the CLI starts by itself. Everything lives under
``./demo-data`` (the service's data too), so running it twice reuses what is there: the ingest
journal skips shards already sent, the jobs are the same ids, export skips complete files.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from batchflow.samples import make_images, make_video

__all__ = ["main", "run"]

IMAGES = 2000
ROOT = Path("demo-data")


def _step(title: str) -> None:
    print(f"\n==> {title}", flush=True)  # noqa: T201 - the demo talks to its user


def _cli(*args: str, env: dict[str, str]) -> str:
    command = [sys.executable, "-m", "batchflow", *args]
    print("$ batchflow " + " ".join(shlex.quote(a) for a in args), flush=True)  # noqa: T201
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        raise SystemExit(f"demo: `batchflow {args[0]}` failed with exit code {done.returncode}")
    return done.stdout


def _show(path: Path, lines: int = 4) -> None:
    print(f"--- {path} (first {lines} lines)")  # noqa: T201
    with path.open(encoding="utf-8") as handle:
        for _, line in zip(range(lines), handle, strict=False):
            print("   " + line.rstrip()[:160])  # noqa: T201


def main() -> None:
    """Run the demo; exit non-zero on the first failing step."""
    started = time.monotonic()
    root = ROOT.resolve()
    env = {
        **os.environ,
        "BATCHFLOW_DATA_DIR": str(root / "service"),
        "BATCHFLOW_STATE_DIR": str(root / "state"),
    }
    for name in ("API_BASE_URL", "BATCHFLOW_API_URL"):
        env.pop(name, None)  # the demo shows the embedded default

    _step(f"sample data: {IMAGES} images in nested folders, two short videos")
    images, videos = root / "samples/images", root / "samples/videos"
    written = make_images(images, IMAGES)
    make_video(videos / "clip-a.mp4", seconds=2.0)
    make_video(videos / "clip-b.mp4", seconds=3.0)
    print(f"{images}: {written} new images; {videos}: 2 videos")  # noqa: T201

    _step("ingest (streams the folders as tar shards; re-running resumes from the journal)")
    _cli("ingest", str(images), "--batch-id", "demo-images", env=env)
    _cli("ingest", str(videos), "--batch-id", "demo-videos", "--videos", env=env)
    _cli("batches", "count", "demo-images", env=env)

    _step("run the built-in image-metadata workflow over both batches and wait for the jobs")
    _cli(
        "run", "--workflow-id", "image-metadata", "--batch-id", "demo-images",
        "--job-id", "demo-images", "--aggregation-format", "jsonl", "--wait", env=env,
    )  # fmt: skip
    _cli(
        "run", "--workflow-id", "image-metadata", "--batch-id", "demo-videos", "--videos",
        "--max-video-fps", "2", "--job-id", "demo-videos", "--wait", env=env,
    )  # fmt: skip

    _step("export the results (downloads resume; archives are extracted with path checks)")
    results = root / "results"
    for job in ("demo-images", "demo-videos"):
        _cli("export", "--job-id", job, "--target-dir", str(results / job), "--extract", env=env)

    _step("results")
    shown = 0
    for pattern in ("demo-images/**/*.jsonl", "demo-videos/**/*.csv"):
        for path in sorted(results.glob(pattern))[:1]:
            _show(path)
            shown += 1
    if shown == 0:
        raise SystemExit(f"demo: no result files found under {results}")
    print(f"\nresults are in {results} ({time.monotonic() - started:.0f} s)")  # noqa: T201


def run() -> None:
    """The demo, then stop the local service it started (its data stays in demo-data/)."""
    env = {**os.environ, "BATCHFLOW_DATA_DIR": str(ROOT.resolve() / "service")}
    try:
        main()
    finally:
        subprocess.run([sys.executable, "-m", "batchflow", "service", "stop"], env=env, check=False)


if __name__ == "__main__":
    run()
