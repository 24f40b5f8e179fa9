"""Several runs at once on one account: do they share its limit (one limiter per account)?

    python bench/shared.py                  # 1, 2 and 4 runs at 25/1, 100-300 ms latency (about a minute)
    python bench/shared.py --calls 20       # a quick check

Each run is its own `lsq-import run` process with its own file and journal, all on one sandbox
(one account) and one state directory, so only the shared limiter in the state directory stands
between them and the account's limit. The combined rate is read from the arrival times the
server saw; run.py's `achieved_rate` is the measure (1.000 is the physical ceiling).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import data  # noqa: E402 - bench/ is not a package: its modules sit beside this file
from run import achieved_rate, ceiling_ratio, send_data, serving_without_gc_pauses  # noqa: E402


def bench_shared(
    work: Path, runs: int, *, limit: tuple[int, float], calls: int, latency: tuple[float, float]
) -> dict[str, object]:
    """`runs` concurrent `lsq-import run`s of about `calls` calls each on one account."""
    from importer.sandbox import Account, Faults, Sandbox  # noqa: PLC0415

    folder = work / f"shared-{runs}"
    folder.mkdir(parents=True)
    mapping = folder / "mapping.yaml"
    mapping.write_text(data.MAPPING_YAML)
    inputs, ids, minimum = [], set(), 0
    for n in range(runs):
        table, run_ids, fewest = send_data(calls, seed=100 + n)
        inputs.append(data.write_csv(table, folder / f"run-{n}.csv"))
        ids |= set(run_ids)
        minimum += fewest
    with (
        serving_without_gc_pauses(),
        Sandbox(
            Account(opportunities=ids), Faults(latency_ms=latency, seed=runs), rate_limit=limit
        ) as sandbox,
    ):
        env = {
            **os.environ,
            "LSQ_ACCESS_KEY": sandbox.access_key,
            "LSQ_SECRET_KEY": sandbox.secret_key,
            "LSQ_IMPORT_STATE_DIR": str(folder / "state"),  # one state dir: one machine
            "LSQ_IMPORT_CACHE_DIR": str(folder / "cache"),
        }
        started = time.perf_counter()
        processes = [
            subprocess.Popen(  # noqa: S603 - this Python, this repository's command
                command(path, mapping, sandbox.url, limit),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for path in inputs
        ]
        codes = [process.wait(timeout=600) for process in processes]
        seconds = time.perf_counter() - started
        stats = sandbox.stats
    summaries = [json.loads(path.with_suffix(".json").read_text()) for path in inputs]
    arrivals = sorted(stats.arrivals)
    allowed, window = limit
    return {
        "runs": runs,
        "limit": f"{allowed}/{window:g}",
        "calls": stats.bulk_calls,
        "minimum": minimum,
        "requests": stats.requests,
        "rate_ratio": achieved_rate(arrivals, allowed) / (allowed / window),
        "ceiling_ratio": ceiling_ratio(arrivals, allowed, window),
        "throttled": stats.throttled,
        "posted": sum(int(summary["rows_posted"]) for summary in summaries),
        "rows": sum(int(summary["rows_total"]) for summary in summaries),
        "exit_codes": codes,
        "seconds": seconds,
    }


def command(path: Path, mapping: Path, url: str, limit: tuple[int, float]) -> list[str]:
    run = ["run", str(path), "--mapping", str(mapping), "--host", url, "--no-progress"]
    options = ["--rate-limit", f"{limit[0]}/{limit[1]:g}", "--summary-json", str(path.with_suffix(".json"))]
    return [sys.executable, "-m", "importer", *run, *options]


def table(results: list[dict[str, object]], latency: tuple[float, float]) -> str:
    lines = [
        f"Concurrent runs on one account (each its own process; latency {latency[0]:g}-{latency[1]:g} ms):",
        "",
        "| runs at once | limit | bulk calls | combined rate / limit | span: ceiling / measured "
        "| throttled answers | rows posted |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for item in results:
        share = int(item["throttled"]) / max(1, int(item["requests"]))  # type: ignore[call-overload]
        lines.append(
            f"| {item['runs']} | {item['limit']} | {item['calls']} | {item['rate_ratio']:.3f} | "
            f"{item['ceiling_ratio']:.3f} | "
            f"{item['throttled']} of {item['requests']} requests ({share:.1%}) | {item['posted']:,}/{item['rows']:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="1,2,4", help="runs at once to try, comma-separated")
    parser.add_argument("--calls", type=int, default=150, help="fewest bulk calls of each run")
    parser.add_argument("--limit", default="25/1", help="the account's limit, and every run's, N/S")
    parser.add_argument("--latency", default="100,300", help="sandbox latency range in ms")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    calls, seconds = args.limit.split("/")
    latency = (float(args.latency.split(",")[0]), float(args.latency.split(",")[1]))
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="lsq-bench-shared-") as folder:
        results = [
            bench_shared(
                Path(folder), int(runs), limit=(int(calls), float(seconds)), calls=args.calls, latency=latency
            )
            for runs in args.runs.split(",")
        ]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(table(results, latency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
