"""The benchmark's results as a Markdown report (printed, and kept in docs/bench.md) and JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.bench.generation import GenerationTiming, LinearFit
from tests.bench.harness import LatencyResult, ThroughputResult
from tests.bench.machine import Machine

TARGET_CEILING_RATIO = 0.5
TARGET_NAIVE_RATIO = 4.0
TARGET_P99_MS = 50.0
TARGET_RSS_MIB = 150.0
TARGET_GENERATE_200_S = 10.0
TARGET_GROWTH = 1.5
"""Cost per channel between the largest specs at most this times that between the smallest."""


@dataclass
class Results:
    machine: Machine | None = None
    options: dict[str, Any] = field(default_factory=dict)
    throughput: list[ThroughputResult] = field(default_factory=list)
    latency: LatencyResult | None = None
    generation: list[GenerationTiming] = field(default_factory=list)
    generation_fit: LinearFit | None = None

    def runs_of(self, name: str) -> list[ThroughputResult]:
        return [t for t in self.throughput if t.scenario == name]

    def by_name(self, name: str) -> ThroughputResult | None:
        """The scenario's median run (by events/s) when it ran in several rounds."""
        runs = sorted(self.runs_of(name), key=lambda t: t.events_per_second)
        return runs[(len(runs) - 1) // 2] if runs else None

    def scenario_names(self) -> list[str]:
        return list(dict.fromkeys(t.scenario for t in self.throughput))

    def ratio(self, name: str, base: str) -> float | None:
        this, other = self.by_name(name), self.by_name(base)
        if this is None or other is None or other.events_per_second == 0:
            return None
        return this.events_per_second / other.events_per_second

    def peak_rss(self) -> float | None:
        values = [
            rss
            for t in self.throughput
            if t.scenario.startswith("filetrash")
            for rss in t.peak_rss_mib
        ]
        if self.latency is not None and self.latency.peak_rss_mib is not None:
            values.append(self.latency.peak_rss_mib)
        return max(values) if values else None

    def targets(self) -> list[tuple[str, str, bool | None]]:
        """(target, measured, met) — met is None when the run did not measure it."""
        rows: list[tuple[str, str, bool | None]] = []
        ceiling = self.ratio("filetrash", "ceiling")
        rows.append(
            (
                f"filetrash ≥ {TARGET_CEILING_RATIO} × ceiling",
                _x(ceiling),
                None if ceiling is None else ceiling >= TARGET_CEILING_RATIO,
            )
        )
        naive = self.ratio("filetrash", "naive")
        rows.append(
            (
                f"filetrash ≥ {TARGET_NAIVE_RATIO:g} × naive",
                _x(naive),
                None if naive is None else naive >= TARGET_NAIVE_RATIO,
            )
        )
        if self.latency is not None:
            p99 = self.latency.to_row_ms["p99"]
            rows.append(
                (
                    f"p99 publish → row ≤ {TARGET_P99_MS:g} ms at {self.latency.rate:,.0f}/s",
                    f"{p99:.1f} ms",
                    p99 <= TARGET_P99_MS,
                )
            )
        else:
            rows.append((f"p99 publish → row ≤ {TARGET_P99_MS:g} ms", "—", None))
        rss = self.peak_rss()
        rows.append(
            (
                f"trash-processor peak RSS ≤ {TARGET_RSS_MIB:g} MiB",
                "—" if rss is None else f"{rss:.0f} MiB",
                None if rss is None else rss <= TARGET_RSS_MIB,
            )
        )
        largest = max(
            (g for g in self.generation if g.spec.startswith("synthetic")),
            key=lambda g: g.channels,
            default=None,
        )
        if largest is not None and self.generation_fit is not None:
            ok = (
                largest.seconds <= TARGET_GENERATE_200_S
                and self.generation_fit.growth <= TARGET_GROWTH
            )
            rows.append(
                (
                    f"generate {largest.channels} channels ≤ {TARGET_GENERATE_200_S:g} s, "
                    "no worse than linear",
                    f"{largest.seconds:.2f} s, growth {self.generation_fit.growth:.2f}",
                    ok,
                )
            )
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine.as_dict() if self.machine else None,
            "options": self.options,
            "throughput": [t.as_dict() for t in self.throughput],
            "ratios": {
                "filetrash/ceiling": _round(self.ratio("filetrash", "ceiling")),
                "filetrash/naive": _round(self.ratio("filetrash", "naive")),
                "filetrash×2/ceiling": _round(self.ratio("filetrash ×2", "ceiling")),
                "filetrash×2/naive": _round(self.ratio("filetrash ×2", "naive")),
            },
            "latency": self.latency.as_dict() if self.latency else None,
            "peak_rss_mib": self.peak_rss(),
            "generation": [g.as_dict() for g in self.generation],
            "generation_fit": self.generation_fit.as_dict() if self.generation_fit else None,
            "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in self.targets()],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ×"


def _mark(ok: bool | None) -> str:
    return "—" if ok is None else ("✅" if ok else "❌")


def markdown(results: Results) -> str:
    out: list[str] = []
    n = results.options.get("n")
    if results.throughput:
        out += [
            f"### Throughput: {n:,} deletions, pre-published",
            "",
            "From the first delivery to the last deletion acked (each worker acks only after "
            "its row is committed and its trash event acknowledged by JetStream)"
            + (
                f"; scenarios run in turn, {results.options.get('rounds')} rounds, median shown."
                if (results.options.get("rounds") or 1) > 1
                else "."
            ),
            "",
            "| scenario | seconds | events/s | × ceiling | × naive "
            "| CPU µs/event (workers · nats · pg) | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---|---:|",
        ]
        for name in results.scenario_names():
            t = results.by_name(name)
            assert t is not None
            ceiling = results.ratio(t.scenario, "ceiling")
            naive = results.ratio(t.scenario, "naive")

            def per_event(cpu: float, events: int = t.events) -> str:
                return f"{cpu / events * 1e6:.0f}"

            out.append(
                f"| {t.scenario} | {t.seconds:.2f} | {t.events_per_second:,.0f} "
                f"| {_x(ceiling)} | {_x(naive)} "
                f"| {per_event(t.cpu_workers)} · {per_event(t.cpu_nats)} · "
                f"{per_event(t.cpu_postgres)} "
                f"| {' / '.join(f'{r:.0f}' for r in t.peak_rss_mib)} |"
            )
        out.append("")
        for name in results.scenario_names():
            runs = results.runs_of(name)
            rates = ""
            if len(runs) > 1:
                rates = " — rounds: " + ", ".join(f"{r.events_per_second:,.0f}/s" for r in runs)
            out.append(f"- **{name}**: {runs[0].description}{rates}")
        out.append("")
    if results.latency is not None:
        lat = results.latency
        out += [
            f"### Latency: {lat.rate:,.0f} deletions/s for {lat.seconds:g} s "
            f"({lat.events:,} events, {lat.achieved_rate:,.0f}/s achieved), one trash-processor",
            "",
            "| from publish to | p50 ms | p95 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, values in (
            ("row stored (`stored_at`)", lat.to_row_ms),
            ("trash event received", lat.to_trash_event_ms),
        ):
            out.append(
                f"| {label} | {values['p50']:.1f} | {values['p95']:.1f} "
                f"| {values['p99']:.1f} | {values['max']:.1f} |"
            )
        out.append("")
    if results.generation:
        out += [
            "### Generation: `python -m generator generate` (the `just generate` command)",
            "",
            "| spec | channels | seconds (median) | runs |",
            "|---|---:|---:|---|",
        ]
        for g in results.generation:
            runs = ", ".join(f"{r:.2f}" for r in g.runs)
            out.append(f"| {g.spec} | {g.channels} | {g.seconds:.2f} | {runs} |")
        fit = results.generation_fit
        if fit is not None:
            out += [
                "",
                f"Fit over the synthetic specs: {fit.intercept:.2f} s + "
                f"{fit.per_channel * 1000:.1f} ms × channels (R² {fit.r_squared:.3f}); cost "
                f"per channel between the two largest specs is {fit.growth:.2f} × that between "
                "the two smallest (1 = linear).",
            ]
        out.append("")
    out += ["### Targets", "", "| target | measured | met |", "|---|---|:-:|"]
    for target, measured, ok in results.targets():
        out.append(f"| {target} | {measured} | {_mark(ok)} |")
    out.append("")
    if results.machine is not None:
        m = results.machine
        out += [
            "### Machine",
            "",
            f"{m.cpu}, {m.cores} cores, {m.ram_gib:g} GiB RAM; {m.os}; Python {m.python}; "
            f"nats-server {m.nats_server}; PostgreSQL {m.postgresql} (fsync on); nats-py "
            f"{m.nats_py}, asyncpg {m.asyncpg}, pydantic {m.pydantic}; {m.date}. "
            "Servers, workers and harness share the machine.",
            "",
        ]
    return "\n".join(out)
