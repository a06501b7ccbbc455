"""`just bench`: each filetrash service against a hand-tuned raw pipeline, an idiomatic
FastStream app and the ceiling, on this machine; then latency and generation.

    python -m tests.bench [--n 20000] [--n-others 20000] [--rounds 3]
                          [--service trash-processor ...] [--contender raw ...] [--only ...]

Prints a Markdown report and writes it, with the raw figures as JSON, to bench-results/.
The benchmark measures the filetrash app's services: it goes with handwritten/filetrash/
and tests/app/ when the app is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from tests.bench import generation
from tests.bench.harness import (
    Bench,
    BenchFailed,
    Options,
    Profiler,
    bench_servers,
    export_revision,
    in_turn,
    remove,
    scenarios,
    temporary_work_dir,
)
from tests.bench.machine import describe, load_average
from tests.bench.report import Results, markdown
from tests.bench.services import CONTENDERS, EXTRA_CONTENDERS, SERVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTS = ("throughput", "latency", "generation")


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


async def run(options: Options, work_dir: Path) -> Results:
    results = Results(
        options={
            "n": options.n,
            "n_others": options.n_others,
            "services": list(options.services),
            "contenders": list(options.contenders),
            "latency_rate": options.latency_rate,
            "latency_seconds": options.latency_seconds,
            "seed": options.seed,
            "rounds": options.rounds,
        }
    )
    wanted = options.only or frozenset(PARTS)
    if wanted & {"throughput", "latency"}:
        async with bench_servers(work_dir) as bench:
            results.machine = await describe(bench.database_url)
            if "throughput" in wanted:
                await _throughput(bench, options, results)
            if "latency" in wanted:
                results.latency = await bench.latency(
                    rate=options.latency_rate,
                    seconds=options.latency_seconds,
                    seed=options.seed + 1,
                    say=_say,
                )
            results.load_after = load_average()
    if "generation" in wanted:
        _say("timing the generator")
        results.generation = generation.measure(
            options.generation_sizes, options.generation_repeats, work_dir / "generation"
        )
        results.generation_fit = generation.fit(results.generation)
    return results


async def _throughput(bench: Bench, options: Options, results: Results) -> None:
    """Rounds interleaved: every round runs every service's contenders in turn, on the same
    pre-built events, so a slow spell of the machine touches them all alike."""
    if options.profile_dir is not None:
        bench.profiler = Profiler(options.profile_dir)
    sources = {
        contender: export_revision(contender.partition("@")[2], bench.work_dir / "revisions")
        for contender in options.contenders
        if contender.startswith("filetrash@")
    }
    events = {
        service: SERVICES[service].events(options.n_for(service), options.seed)
        for service in options.services
    }
    for round_ in range(1, options.rounds + 1):
        for service in options.services:
            for scenario in in_turn(
                scenarios(bench.nats_url, bench.database_url, service, options.contenders, sources),
                round_,
            ):
                _say(
                    f"{service} / {scenario.name} (round {round_} of {options.rounds}): "
                    f"{scenario.description}"
                )
                results.throughput.append(
                    await bench.throughput(scenario, events[service], say=_say, round_=round_)
                )


def _names(values: list[str], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Comma-separated or repeated names, each checked; all of `known` when none given."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known and not _a_revision(name, known)]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return tuple(dict.fromkeys(names)) if names else ()


def _a_revision(name: str, known: tuple[str, ...]) -> bool:
    """`filetrash@REV`: the filetrash contender as of another revision (`export_revision`)."""
    contender, at, revision = name.partition("@")
    return contender == "filetrash" and "filetrash" in known and bool(at and revision)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument(
        "--n", type=int, default=20_000, help="events per throughput run of the trash-processor"
    )
    parser.add_argument(
        "--n-others",
        type=int,
        default=20_000,
        help="events per throughput run of each other service",
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="latency: deletions per second")
    parser.add_argument(
        "--latency-seconds", type=float, default=20.0, help="latency: how long to publish"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="run the throughput contenders in turn this many times; medians are reported",
    )
    parser.add_argument(
        "--only", action="append", choices=PARTS, default=[], help="run only this part"
    )
    parser.add_argument(
        "--service",
        "--services",
        dest="services",
        action="append",
        default=[],
        help=f"throughput: only these services (repeatable or comma-separated; {', '.join(SERVICES)})",
    )
    parser.add_argument(
        "--contender",
        "--scenario",
        dest="contenders",
        action="append",
        default=[],
        help=(
            f"throughput: only these contenders (repeatable or comma-separated; default "
            f"{', '.join(CONTENDERS)}; also {', '.join(EXTRA_CONTENDERS)} for the "
            "trash-processor; filetrash@REV: filetrash as of a commit, tag or branch, for an A/B "
            "in one run)"
        ),
    )
    parser.add_argument(
        "--generation-sizes", default="50,100,200", help="channels of the synthetic specs"
    )
    parser.add_argument("--generation-repeats", type=int, default=3)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="attach py-spy to every throughput worker; collapsed stacks go to this directory",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results")
    parser.add_argument("--keep-logs", action="store_true", help="keep the workers' logs")
    args = parser.parse_args(argv)

    services = _names(args.services, tuple(SERVICES), "service") or tuple(SERVICES)
    contenders = _names(args.contenders, CONTENDERS + EXTRA_CONTENDERS, "contender") or CONTENDERS
    options = Options(
        n=args.n,
        n_others=args.n_others,
        latency_rate=args.rate,
        latency_seconds=args.latency_seconds,
        seed=args.seed,
        rounds=max(1, args.rounds),
        generation_sizes=tuple(int(s) for s in args.generation_sizes.split(",") if s),
        generation_repeats=args.generation_repeats,
        only=frozenset(args.only),
        services=services,
        contenders=contenders,
        profile_dir=args.profile.resolve() if args.profile else None,
    )
    if options.profile_dir is not None:
        options.profile_dir.mkdir(parents=True, exist_ok=True)
    work_dir = temporary_work_dir()
    # SIGTERM as Ctrl-C: the servers and the contenders are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        results = asyncio.run(run(options, work_dir))
    except BenchFailed as error:
        print(f"bench failed: {error}", file=sys.stderr)
        _say(f"logs kept in {work_dir}")
        return 1
    if args.keep_logs:
        _say(f"logs kept in {work_dir}")
    else:
        remove(work_dir)
    report = markdown(results)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(report + "\n", encoding="utf-8")
    (args.out / "latest.json").write_text(
        json.dumps(results.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    _say(f"written to {args.out / 'latest.md'} and {args.out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
