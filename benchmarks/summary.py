"""``python -m benchmarks.summary [RESULTS_DIR]``: the results JSON as Markdown tables.

The README's "full run" section is this output, pasted: one table per workload (median, min,
max, samples), its ratios, failures and pending items, and the machine and date once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS_DIR

__all__ = ["render"]

ORDER = ("presign", "pipeline", "listing", "peers", "server", "cli-startup")


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _workload(data: dict[str, Any]) -> list[str]:
    mode = "quick" if data["quick"] else f"repeat {data['repeat']}"
    lines = [
        f"### {data['workload']}: {data['title']}",
        "",
        f"{data['date']}, {mode}, {data['durationSeconds']:.0f} s.",
        "",
        "| subject | metric | median | min | max | unit | n |",
        "|---|---|--:|--:|--:|---|--:|",
    ]
    lines.extend(
        f"| {c['subject']} | {c['metric']} | {_fmt(c['median'])} | {_fmt(c['min'])} | "
        f"{_fmt(c['max'])} | {c['unit']} | {len(c['samples'])} |"
        for c in data["cases"]
    )
    if data["ratios"]:
        lines += ["", "| ratio | value | meaning |", "|---|--:|---|"]
        for ratio in data["ratios"]:
            value = "n/a" if ratio["value"] is None else f"{ratio['value']:.3g}"
            lines.append(f"| {ratio['name']} | {value} | {ratio['meaning']} |")
    for failure in data["failures"]:
        detail = failure.get("lastLines") or failure.get("serverLog") or ""
        last = detail.strip().splitlines()[-1] if detail.strip() else ""
        exit_code = failure.get("exitCode")
        code = f" (exit {exit_code})" if exit_code is not None else ""
        lines.append("")
        lines.append(f"**FAILED** {failure['subject']}: {failure['what']}{code}. {last}")
    for pending in data["pending"]:
        lines += ["", f"**PENDING** {pending}"]
    for note in data["notes"]:
        lines += ["", f"Note: {note}"]
    if data["plots"]:
        lines += ["", " ".join(f"![{p}](results/{p})" for p in data["plots"])]
    return [*lines, ""]


def render(results: Path = RESULTS_DIR) -> str:
    found = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    if not found:
        return "(no results)"
    first = next(iter(found.values()))
    m = first["machine"]
    ram = f"{m['ramBytes'] / 2**30:.0f} GiB" if m.get("ramBytes") else "?"
    lines = [
        f"Machine: {m['cpuCount']} CPUs ({m['cpuModel']}), {ram} RAM, Python {m['python']}, "
        f"{m['os']}.",
        "",
    ]
    for name in [*ORDER, *sorted(set(found) - set(ORDER))]:
        if name in found:
            lines.extend(_workload(found[name]))
    return "\n".join(lines)


def main() -> None:
    print(render(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS_DIR))


if __name__ == "__main__":
    main()
