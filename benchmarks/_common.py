"""Shared harness pieces: timing statistics, machine facts, result records, tables and JSON.

Every workload returns a :class:`Report`: rows of measured cases (raw samples + median/min/max),
ratios against a baseline measured in the same run, failures (a command that did not work is a
recorded result, never a number) and pending items (a workload part whose feature is missing).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "RESULTS_DIR",
    "SCRATCH_DIR",
    "Case",
    "Report",
    "RunConfig",
    "machine_info",
    "package_versions",
    "repeat",
    "stats",
    "write_report",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SCRATCH_DIR = BENCH_DIR / "scratch"

_PACKAGES = (
    "batchflow",
    "botocore",
    "boto3",
    "aioboto3",
    "gcloud-aio-storage",
    "azure-storage-blob",
    "cryptography",
    "httpx",
    "anyio",
    "fastapi",
    "uvicorn",
    "moto",
    "psutil",
    "matplotlib",
)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What the command line asked for."""

    quick: bool
    repeat: int
    results_dir: Path = RESULTS_DIR
    scratch_dir: Path = SCRATCH_DIR


def stats(samples: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``samples`` (empty -> NaN-free zeros are never invented)."""
    if not samples:
        raise ValueError("no samples")
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


def repeat(fn: Callable[[], float], times: int) -> list[float]:
    """Call ``fn`` ``times`` times; each call returns one sample."""
    return [fn() for _ in range(max(times, 1))]


@dataclass
class Case:
    """One measured line of a table: a metric of one subject, with its raw samples."""

    subject: str
    metric: str
    unit: str
    samples: list[float]
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "subject": self.subject,
            "metric": self.metric,
            "unit": self.unit,
            "samples": [round(s, 6) for s in self.samples],
            **{k: round(v, 6) for k, v in stats(self.samples).items()},
        }
        if self.params:
            out["params"] = self.params
        if self.extra:
            out["extra"] = self.extra
        return out

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Report:
    """The outcome of one workload."""

    name: str
    title: str
    config: RunConfig
    parameters: dict[str, Any] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, case: Case) -> Case:
        self.cases.append(case)
        return case

    def find(self, subject: str, metric: str) -> Case | None:
        for case in self.cases:
            if case.subject == subject and case.metric == metric:
                return case
        return None

    def ratio(self, name: str, num: Case | None, den: Case | None, meaning: str) -> float | None:
        """Record median(num)/median(den); missing or zero sides are recorded as None."""
        value = None
        if num is not None and den is not None and den.median:
            value = num.median / den.median
        self.ratios.append(
            {
                "name": name,
                "value": None if value is None else round(value, 4),
                "numerator": None if num is None else f"{num.subject} {num.metric}",
                "denominator": None if den is None else f"{den.subject} {den.metric}",
                "meaning": meaning,
            }
        )
        return value

    def fail(self, subject: str, what: str, **details: Any) -> None:
        self.failures.append({"subject": subject, "what": what, **details})

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.name,
            "title": self.title,
            "quick": self.config.quick,
            "repeat": self.config.repeat,
            "date": datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds"),
            "durationSeconds": round(time.time() - self.started, 2),
            "machine": machine_info(),
            "versions": package_versions(),
            "parameters": self.parameters,
            "cases": [c.as_dict() for c in self.cases],
            "ratios": self.ratios,
            "failures": self.failures,
            "pending": self.pending,
            "notes": self.notes,
            "plots": self.plots,
        }

    def table(self) -> str:
        """A plain-text table: one line per case, then the ratios, failures and pending items."""
        head = ("subject", "metric", "median", "min", "max", "unit", "n")
        rows = [head]
        for c in self.cases:
            s = stats(c.samples)
            rows.append(
                (c.subject, c.metric, _num(s["median"]), _num(s["min"]), _num(s["max"]),
                 c.unit, str(len(c.samples)))
            )  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [f"== {self.name}: {self.title}" + (" (quick)" if self.config.quick else "")]
        for i, r in enumerate(rows):
            lines.append(
                "  ".join(
                    cell.ljust(w) if j < 2 or j == 5 else cell.rjust(w)
                    for j, (cell, w) in enumerate(zip(r, widths, strict=True))
                )
            )
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        for ratio in self.ratios:
            value = "n/a" if ratio["value"] is None else f"{ratio['value']:.3g}"
            lines.append(f"ratio {ratio['name']} = {value}  ({ratio['meaning']})")
        lines.extend(f"FAILED {f['subject']}: {f['what']}" for f in self.failures)
        lines.extend(f"PENDING {p}" for p in self.pending)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def write_report(report: Report) -> Path:
    report.config.results_dir.mkdir(parents=True, exist_ok=True)
    path = report.config.results_dir / f"{report.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report.as_dict(), indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().total)
    except ImportError:
        return None


_FLOOR: list[float] = []


def _rss_floor() -> float:
    if not _FLOOR:
        from benchmarks._procs import rss_floor

        _FLOOR.append(round(rss_floor(), 1))
    return _FLOOR[0]


def machine_info() -> dict[str, Any]:
    return {
        "rssFloorMiB": _rss_floor(),
        "cpuCount": os.cpu_count(),
        "cpuModel": _cpu_model(),
        "ramBytes": _ram_bytes(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
    }


def package_versions(names: Iterable[str] = _PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
