"""The benchmark's results as a Markdown report (printed, and kept in docs/bench.md) and JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.bench.generation import GenerationTiming, LinearFit
from tests.bench.harness import LatencyResult, ThroughputResult
from tests.bench.machine import Machine

GOAL_RAW_RATIO = 0.8
"""filetrash's events/s at least this times the raw pipeline's (issue 14)."""
GOAL_FASTSTREAM_RATIO = 2.0
"""filetrash's events/s at least this times the FastStream app's (issue 14)."""
GOAL_SERVER_CPU_RATIO = 1.2
"""filetrash's nats-server and PostgreSQL CPU per event at most this times raw's (issue 14)."""
TARGET_P99_MS = 50.0
TARGET_RSS_MIB = 150.0
TARGET_GENERATE_200_S = 10.0
TARGET_GROWTH = 1.5
"""Cost per channel between the largest specs at most this times that between the smallest."""


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass(frozen=True)
class Summary:
    """A contender on a service over its rounds: the median of each figure on its own."""

    service: str
    contender: str
    description: str
    rounds: int
    events: int
    events_per_second: float
    seconds: float
    us_process: float
    """CPU µs per event of the contender's process(es)."""
    us_nats: float
    us_postgres: float
    peak_rss_mib: float
    rates: list[float]
    """events/s of each round, in order."""

    @classmethod
    def of(cls, runs: Sequence[ThroughputResult]) -> Summary:
        first = runs[0]
        return cls(
            service=first.service,
            contender=first.scenario,
            description=first.description,
            rounds=len(runs),
            events=first.events,
            events_per_second=median([r.events_per_second for r in runs]),
            seconds=median([r.seconds for r in runs]),
            us_process=median([r.us_per_event(r.cpu_workers) for r in runs]),
            us_nats=median([r.us_per_event(r.cpu_nats) for r in runs]),
            us_postgres=median([r.us_per_event(r.cpu_postgres) for r in runs]),
            peak_rss_mib=max(max(r.peak_rss_mib, default=0.0) for r in runs),
            rates=[r.events_per_second for r in runs],
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("events_per_second", "seconds", "us_process", "us_nats", "us_postgres"):
            out[key] = round(out[key], 2)
        out["rates"] = [round(r) for r in self.rates]
        return out


@dataclass
class Results:
    machine: Machine | None = None
    options: dict[str, Any] = field(default_factory=dict)
    throughput: list[ThroughputResult] = field(default_factory=list)
    latency: LatencyResult | None = None
    generation: list[GenerationTiming] = field(default_factory=list)
    generation_fit: LinearFit | None = None
    load_after: str = ""

    def services(self) -> list[str]:
        return list(dict.fromkeys(t.service for t in self.throughput))

    def contenders(self, service: str) -> list[str]:
        return list(dict.fromkeys(t.scenario for t in self.throughput if t.service == service))

    def runs_of(self, service: str, contender: str) -> list[ThroughputResult]:
        return [t for t in self.throughput if t.service == service and t.scenario == contender]

    def summary(self, service: str, contender: str) -> Summary | None:
        runs = self.runs_of(service, contender)
        return Summary.of(runs) if runs else None

    def ratio(self, service: str, name: str, base: str) -> float | None:
        """events/s of `name` over `base` (medians)."""
        this, other = self.summary(service, name), self.summary(service, base)
        if this is None or other is None or other.events_per_second == 0:
            return None
        return this.events_per_second / other.events_per_second

    def cpu_ratio(
        self, service: str, which: str, name: str = "filetrash", base: str = "raw"
    ) -> float | None:
        """CPU µs per event of `which` (process, nats, postgres) under `name` over `base`."""
        this, other = self.summary(service, name), self.summary(service, base)
        if this is None or other is None:
            return None
        theirs = getattr(other, f"us_{which}")
        return getattr(this, f"us_{which}") / theirs if theirs > 0 else None

    def ratios(self, service: str) -> dict[str, float | None]:
        return {
            "filetrash/raw": _round(self.ratio(service, "filetrash", "raw")),
            "filetrash/faststream": _round(self.ratio(service, "filetrash", "faststream")),
            "filetrash/ceiling": _round(self.ratio(service, "filetrash", "ceiling")),
            "nats cpu filetrash/raw": _round(self.cpu_ratio(service, "nats")),
            "postgres cpu filetrash/raw": _round(self.cpu_ratio(service, "postgres")),
            "process cpu filetrash/raw": _round(self.cpu_ratio(service, "process")),
        }

    def goals(self, service: str) -> list[tuple[str, str, bool | None]]:
        """Issue 14's goals for one service: (goal, measured, met)."""
        rows: list[tuple[str, str, bool | None]] = []
        raw = self.ratio(service, "filetrash", "raw")
        rows.append(
            (
                f"{service}: filetrash ≥ {GOAL_RAW_RATIO:g} × raw (events/s)",
                _x(raw),
                None if raw is None else raw >= GOAL_RAW_RATIO,
            )
        )
        fast = self.ratio(service, "filetrash", "faststream")
        rows.append(
            (
                f"{service}: filetrash ≥ {GOAL_FASTSTREAM_RATIO:g} × FastStream (events/s)",
                _x(fast),
                None if fast is None else fast >= GOAL_FASTSTREAM_RATIO,
            )
        )
        for which, label in (("nats", "nats-server"), ("postgres", "PostgreSQL")):
            cpu = self.cpu_ratio(service, which)
            rows.append(
                (
                    f"{service}: {label} CPU per event ≤ {GOAL_SERVER_CPU_RATIO:g} × raw's",
                    _x(cpu),
                    None if cpu is None else cpu <= GOAL_SERVER_CPU_RATIO,
                )
            )
        return rows

    def peak_rss(self) -> float | None:
        values = [
            rss
            for t in self.throughput
            if t.scenario.startswith("filetrash") and t.service == "trash-processor"
            for rss in t.peak_rss_mib
        ]
        if self.latency is not None and self.latency.peak_rss_mib is not None:
            values.append(self.latency.peak_rss_mib)
        return max(values) if values else None

    def targets(self) -> list[tuple[str, str, bool | None]]:
        """(target, measured, met) — met is None when the run did not measure it."""
        rows: list[tuple[str, str, bool | None]] = []
        for service in self.services():
            rows += self.goals(service)
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
        services: dict[str, Any] = {}
        for service in self.services():
            summaries = [self.summary(service, c) for c in self.contenders(service)]
            services[service] = {
                "contenders": {s.contender: s.as_dict() for s in summaries if s is not None},
                "ratios": self.ratios(service),
                "goals": [
                    {"goal": g, "measured": m, "met": ok} for g, m, ok in self.goals(service)
                ],
            }
        return {
            "machine": self.machine.as_dict() if self.machine else None,
            "load_after": self.load_after,
            "options": self.options,
            "throughput": [t.as_dict() for t in self.throughput],
            "services": services,
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
    rounds = results.options.get("rounds") or 1
    if results.throughput:
        out += [
            "### Throughput: each service against its contenders, events pre-published",
            "",
            "From the first delivery to the last event acked (each contender but the ceiling "
            "acks only after its work is committed and, for the trash-processor, its trash "
            "event acknowledged by JetStream; the harness counts the work after each run). "
            f"Contenders run in turn, {rounds} round{'s' if rounds > 1 else ''} interleaved; "
            "each figure is the median of its rounds. CPU is per event: the contender's "
            "process(es) · nats-server · PostgreSQL.",
            "",
        ]
        for service in results.services():
            first = results.summary(service, results.contenders(service)[0])
            assert first is not None
            out += [
                f"#### {service}: {first.events:,} events",
                "",
                "| contender | events/s | × raw | × FastStream | CPU µs/event "
                "(process · nats · pg) | peak RSS MiB | rounds, events/s |",
                "|---|---:|---:|---:|---|---:|---|",
            ]
            for contender in results.contenders(service):
                t = results.summary(service, contender)
                assert t is not None
                out.append(
                    f"| {contender} | {t.events_per_second:,.0f} "
                    f"| {_x(results.ratio(service, contender, 'raw'))} "
                    f"| {_x(results.ratio(service, contender, 'faststream'))} "
                    f"| {t.us_process:.0f} · {t.us_nats:.0f} · {t.us_postgres:.0f} "
                    f"| {t.peak_rss_mib:.0f} "
                    f"| {', '.join(f'{r:,.0f}' for r in t.rates)} |"
                )
            out.append("")
        out.append("Contenders:")
        out.append("")
        described: dict[str, str] = {}
        for t in results.throughput:
            described.setdefault(t.scenario, t.description.replace(t.service, "SERVICE"))
        for name, description in described.items():
            out.append(f"- **{name}**: {description}")
        out.append("")
        out += [
            "### Goals (issue 14)",
            "",
            "| goal | measured | met |",
            "|---|---|:-:|",
        ]
        for service in results.services():
            for goal, measured, ok in results.goals(service):
                out.append(f"| {goal} | {measured} | {_mark(ok)} |")
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
    goals = {goal for service in results.services() for goal, _, _ in results.goals(service)}
    for target, measured, ok in results.targets():
        if target not in goals:  # the goals have their own table above
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
            "Servers, workers and harness share the machine"
            + (
                f"; load average {m.load} (1, 5, 15 min) when the bench began, "
                f"{results.load_after} at its end."
                if m.load and results.load_after
                else "."
            ),
            "",
        ]
    return "\n".join(out)
