"""The fault suite exercises the filetrash app (its services, tables and publisher): it goes
with handwritten/filetrash/ and tests/app/ when the app is deleted.

Fixtures of the fault scenarios: a working directory for the processes' logs (shown when a
scenario fails), and `record_result`, which writes a scenario's figures to bench-results/ and
keeps them for the table printed at the end of the session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.table import RecordResult, ScenarioResult, render, render_notes, write

_RESULTS = pytest.StashKey[list[ScenarioResult]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = []


@pytest.fixture
def record_result(request: pytest.FixtureRequest) -> Iterator[RecordResult]:
    """`record_result(scenario, reconciliation-like counts, recovery_s=..., **notes)`."""
    started = time.monotonic()

    def record(
        scenario: str,
        *,
        published: int,
        processed: int | None,
        lost: int,
        duplicated: int,
        dead_lettered: int | None,
        recovery_s: float | None,
        **notes: Any,
    ) -> ScenarioResult:
        result = ScenarioResult(
            scenario=scenario,
            published=published,
            processed=processed,
            lost=lost,
            duplicated=duplicated,
            dead_lettered=dead_lettered,
            recovery_s=recovery_s,
            notes=notes,
            test=request.node.nodeid.split("::", 1)[-1],
            duration_s=round(time.monotonic() - started, 1),
        )
        write(result)
        request.config.stash[_RESULTS].append(result)
        return result

    yield record


@pytest.fixture
def fault_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where a scenario's processes write their logs; the tails are printed if it fails."""
    path = tmp_path / "processes"
    path.mkdir()
    yield path
    failed = any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    if failed:
        for log in sorted(path.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()
            print(f"\n----- {log.name} (last 30 of {len(lines)} lines) -----")
            print("\n".join(lines[-30:]))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    recorded: list[ScenarioResult] = config.stash[_RESULTS]
    results = sorted(recorded, key=lambda r: r.scenario)
    if not results:
        return
    terminalreporter.section("fault scenarios")
    terminalreporter.write_line(render(results))
    notes = render_notes(results)
    if notes:
        terminalreporter.write_line("")
        terminalreporter.write_line(notes)
