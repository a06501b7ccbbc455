"""The fault scenarios' figures: one JSON file per scenario under bench-results/faults/, and
the table made of them.

`python -m tests.faults.table` prints the table of the files there (`--markdown` for
docs/faults.md); the faults conftest prints the same table at the end of a pytest session,
for the scenarios that ran in it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "bench-results" / "faults"

COLUMNS = (
    ("scenario", "scenario"),
    ("published", "published"),
    ("processed", "processed"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("dead_lettered", "dead-lettered"),
    ("recovery", "recovery (s)"),
)


@dataclass
class ScenarioResult:
    """What one scenario published and what became of it; `notes` holds its own figures
    (faults injected, CPU time during an outage, publish rates...). `processed` and
    `dead_lettered` are None where nothing consumes (a publish benchmark)."""

    scenario: str
    published: int
    processed: int | None
    lost: int
    duplicated: int
    dead_lettered: int | None
    recovery_s: float | None
    notes: dict[str, Any] = field(default_factory=dict)
    test: str = ""
    duration_s: float = 0.0
    finished_at: str = ""
    machine: str = ""

    def row(self) -> dict[str, str]:
        return {
            "scenario": self.scenario,
            "published": str(self.published),
            "processed": "-" if self.processed is None else str(self.processed),
            "lost": str(self.lost),
            "duplicated": str(self.duplicated),
            "dead_lettered": "-" if self.dead_lettered is None else str(self.dead_lettered),
            "recovery": "-" if self.recovery_s is None else f"{self.recovery_s:.1f}",
        }


RecordResult = Callable[..., "ScenarioResult"]
"""The `record_result` fixture: `record_result(scenario, published=..., ..., **notes)`."""


def machine() -> str:
    """`Linux 6.1 x86_64, 2 CPUs, Python 3.11.7`."""
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )


def file_name(test_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in test_id)
    return f"{safe.strip('_')}.json"


def write(result: ScenarioResult, directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    result.finished_at = result.finished_at or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result.machine = result.machine or machine()
    path = directory / file_name(result.test or result.scenario)
    path.write_text(json.dumps(asdict(result), indent=2, sort_keys=True) + "\n")
    return path


def read(directory: Path = RESULTS_DIR) -> list[ScenarioResult]:
    results = []
    for path in sorted(directory.glob("*.json")):
        data: Mapping[str, Any] = json.loads(path.read_text())
        results.append(ScenarioResult(**data))
    return sorted(results, key=lambda r: r.scenario)


def render(results: Sequence[ScenarioResult], *, markdown: bool = False) -> str:
    rows = [r.row() for r in results]
    headers = [title for _, title in COLUMNS]
    keys = [key for key, _ in COLUMNS]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |"]
        lines.append("| " + " | ".join("---" if k == "scenario" else "---:" for k in keys) + " |")
        lines.extend("| " + " | ".join(row[k] for k in keys) + " |" for row in rows)
        return "\n".join(lines)
    widths = [
        max([len(h)] + [len(row[k]) for row in rows]) for h, k in zip(headers, keys, strict=True)
    ]

    def line(cells: Iterable[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [line(headers), line("-" * w for w in widths)]
    out.extend(line(row[k] for k in keys) for row in rows)
    return "\n".join(out)


def render_notes(results: Sequence[ScenarioResult]) -> str:
    lines = []
    for result in results:
        if result.notes:
            shown = ", ".join(f"{k}: {v}" for k, v in result.notes.items())
            lines.append(f"- {result.scenario}: {shown}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument("--dir", type=Path, default=RESULTS_DIR, help="where the JSON files are")
    args = parser.parse_args(argv)
    results = read(args.dir)
    if not results:
        print(f"no results in {args.dir}: run `just faults` first")
        return 1
    print(render(results, markdown=args.markdown))
    notes = render_notes(results)
    if notes:
        print("\n" + notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
