"""`just bench`: filetrash against the ceiling and the naive loop, on this machine.

    python -m tests.bench [--n 20000] [--latency-seconds 20] [--rate 1000] [--only ...]

Prints a Markdown report and writes it, with the raw figures as JSON, to bench-results/.
The benchmark measures the filetrash app's trash-processor: it goes with handwritten/filetrash/
and tests/app/ when the app is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tests.bench import generation
from tests.bench.harness import (
    Bench,
    BenchFailed,
    Options,
    Profiler,
    bench_servers,
    deletions,
    remove,
    scenarios,
    temporary_work_dir,
)
from tests.bench.machine import describe
from tests.bench.report import Results, markdown

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTS = ("throughput", "latency", "generation")


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


async def run(options: Options, work_dir: Path) -> Results:
    results = Results(
        options={
            "n": options.n,
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
    if "generation" in wanted:
        _say("timing the generator")
        results.generation = generation.measure(
            options.generation_sizes, options.generation_repeats, work_dir / "generation"
        )
        results.generation_fit = generation.fit(results.generation)
    return results


async def _throughput(bench: Bench, options: Options, results: Results) -> None:
    payloads = deletions(options.n, options.seed)
    if options.profile_dir is not None:
        bench.profiler = Profiler(options.profile_dir)
    chosen = [
        scenario
        for scenario in scenarios(bench.nats_url, bench.database_url)
        if not options.scenarios or scenario.name in options.scenarios
    ]
    for round_ in range(1, options.rounds + 1):
        for scenario in chosen:
            _say(f"{scenario.name} (round {round_} of {options.rounds}): {scenario.description}")
            results.throughput.append(await bench.throughput(scenario, payloads, say=_say))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="deletions per throughput run")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency: deletions per second")
    parser.add_argument(
        "--latency-seconds", type=float, default=20.0, help="latency: how long to publish"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the throughput scenarios in turn this many times; the median run counts",
    )
    parser.add_argument(
        "--only", action="append", choices=PARTS, default=[], help="run only this part"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        choices=("ceiling", "naive", "filetrash", "filetrash ×2"),
        help="throughput: run only this scenario (repeatable)",
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

    options = Options(
        n=args.n,
        latency_rate=args.rate,
        latency_seconds=args.latency_seconds,
        seed=args.seed,
        rounds=max(1, args.rounds),
        generation_sizes=tuple(int(s) for s in args.generation_sizes.split(",") if s),
        generation_repeats=args.generation_repeats,
        only=frozenset(args.only),
        scenarios=frozenset(args.scenario),
        profile_dir=args.profile.resolve() if args.profile else None,
    )
    if options.profile_dir is not None:
        options.profile_dir.mkdir(parents=True, exist_ok=True)
    work_dir = temporary_work_dir()
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
