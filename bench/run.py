"""Measure lsq-import where users wait: reading and validating big sheets, and sending at the limit.

    python bench/run.py                 # the full run whose table is in the README (about 15 minutes)
    python bench/run.py --quick         # tiny inputs, seconds: checks that the bench still works

Every measurement runs in a fresh process (`lsq-import` itself, or this file with `--child`), so
its peak RSS is that process's own (`wait4`). Sending runs the sandbox in this process, with
100-300 ms latency per call and its rate limit counted by arrival, against `lsq-import run` in a
subprocess, and reads the arrival times the server saw.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import data  # noqa: E402 - bench/ is not a package: its modules sit beside this file

from importer.runner import ImportConfig  # noqa: E402


@dataclass
class Run:
    seconds: float
    peak_mb: float
    output: str = ""


def run_process(command: list[str], env: dict[str, str] | None = None) -> Run:
    """Run to completion; wall time and the peak RSS of the process (not of its children)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)  # noqa: S603 - this Python, this repository's commands
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):  # 1: some rows are invalid, as the data means them to be
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{output}")
    return Run(seconds, usage.ru_maxrss / 1024, output)


def lsq_import(*args: str, env: dict[str, str] | None = None) -> Run:
    return run_process([sys.executable, "-m", "importer", *args], env=env)


def child(*args: str) -> dict:
    """Run one `--child` measurement of this file in a fresh process; its JSON plus peak RSS."""
    run = run_process([sys.executable, __file__, "--child", *args])
    result = json.loads(run.output.strip().splitlines()[-1])
    result["peak_mb"] = run.peak_mb
    return result


# --- in the child process ----------------------------------------------------------------------


def child_main(kind: str, path: str, extra: str) -> None:
    """Time one thing inside this process and print it as JSON (the parent adds the peak RSS)."""
    if kind in ("csv", "xlsx"):  # make the data here: a parent holding it would lend its RSS to every child
        rows, seed = (int(part) for part in extra.split(","))
        write = data.write_csv if kind == "csv" else data.write_xlsx
        write(data.frame(rows, seed=seed), Path(path))
        print(json.dumps({"rows": rows}))
    elif kind == "read-openpyxl":
        import pandas as pd  # noqa: PLC0415 - the child imports only what it measures

        started = time.perf_counter()
        frame = pd.read_excel(path, engine="openpyxl", dtype=str)
        print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(frame)}))
    elif kind == "read":
        from importer.loader import load_sheet  # noqa: PLC0415

        started = time.perf_counter()
        sheet = load_sheet(path)
        print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(sheet)}))
    elif kind == "stages":
        print(json.dumps(stages(path, extra)))
    elif kind == "validate-ratio":
        print(json.dumps(validate_ratio(Path(path), Path(extra))))
    elif kind == "ledger-build":
        import ledger  # noqa: PLC0415 - bench/ledger.py, beside this file

        source, mapping = extra.split(",")
        print(json.dumps({"rows": ledger.build_ledger(Path(path), Path(source), Path(mapping))}))
    elif kind.startswith("ledger-"):
        import ledger  # noqa: PLC0415

        source, mapping, work = extra.split(",")
        print(json.dumps(ledger.measure(kind, Path(source), Path(mapping), Path(path), Path(work))))
    elif kind == "lookup":
        import ledger  # noqa: PLC0415

        print(json.dumps(ledger.measure_lookup(int(path))))
    else:
        raise SystemExit(f"unknown child measurement {kind!r}")


def stages(path: str, mapping_path: str) -> dict[str, float]:
    """Seconds per stage of what `run` does before its first call, the journal's keys included."""
    from importer.ledger import assign_keys  # noqa: PLC0415
    from importer.loader import load_sheet  # noqa: PLC0415
    from importer.mapping import load_mapping  # noqa: PLC0415
    from importer.planner import plan_batches  # noqa: PLC0415
    from importer.validate import validate_sheet  # noqa: PLC0415

    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[name] = now - clock
        clock = now

    mapping = load_mapping(mapping_path)
    sheet = load_sheet(path)
    lap("load")
    validated = validate_sheet(sheet, mapping, mapping_path)
    lap("validate")
    plan_batches(validated.rows)
    lap("plan")
    assign_keys(validated.rows)
    lap("keys")
    return times


def validate_ratio(path: Path, mapping: Path) -> dict[str, float]:
    """A bare `pandas.read_csv(dtype=str)` of the file, then what `validate` does, in this process."""
    import pandas as pd  # noqa: PLC0415

    from importer.runs import validate_pattern  # noqa: PLC0415

    started = time.perf_counter()
    frame = pd.read_csv(path, dtype=str)
    read = time.perf_counter() - started
    del frame
    config = ImportConfig(input_path=path, mapping_path=mapping, errors_path=path.with_suffix(".ratio.xlsx"))
    started = time.perf_counter()
    validate_pattern(config, str(path))
    return {"read": read, "validate": time.perf_counter() - started}


# --- reading and validating --------------------------------------------------------------------


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]


def made(work: Path, kind: str, rows: int, seed: int, name: str = "activities") -> Path:
    """The data file of `rows` rows in `work`, made once (a --data folder keeps it between runs)."""
    path = work / f"{name}-{rows}.{kind}"
    if not path.exists():
        child(kind, str(path), f"{rows},{seed}")
    return path


def bench_validate(work: Path, rows: int, xlsx_rows: int, repeat: int) -> tuple[list[dict], dict]:
    """Each measurement `repeat` times (the openpyxl baseline, slow, one time fewer); medians."""
    mapping = work / "mapping.yaml"
    mapping.write_text(data.MAPPING_YAML)
    csv, xlsx = made(work, "csv", rows, 1), made(work, "xlsx", xlsx_rows, 2)
    results = []
    for path, count in ((csv, rows), (xlsx, xlsx_rows)):
        runs = [
            lsq_import("validate", str(path), "--mapping", str(mapping), "--no-progress")
            for _ in range(repeat)
        ]
        best = median_run(runs)
        results.append(
            {
                "key": path.suffix[1:],
                "what": f"`lsq-import validate` {path.suffix[1:].upper()}",
                "rows": count,
                "seconds": best.seconds,
                "all": [run.seconds for run in runs],
                "peak_mb": best.peak_mb,
            }
        )
    for kind, label in (
        ("read", "read XLSX: `load_sheet` (python-calamine)"),
        ("read-openpyxl", 'read XLSX: `pandas.read_excel(engine="openpyxl")`'),
    ):
        measured = [
            child(kind, str(xlsx), str(mapping))
            for _ in range(repeat if kind == "read" else max(1, repeat - 1))
        ]
        best = sorted(measured, key=lambda m: m["seconds"])[len(measured) // 2]
        results.append(
            {
                "key": kind,
                "what": label,
                "rows": xlsx_rows,
                "seconds": best["seconds"],
                "all": [m["seconds"] for m in measured],
                "peak_mb": best["peak_mb"],
            }
        )
    overhead = [child("stages", str(csv), str(mapping)) for _ in range(repeat)]
    stage_times = {
        name: statistics.median(m[name] for m in overhead) for name in ("load", "validate", "plan", "keys")
    }
    ratios = sorted(
        (child("validate-ratio", str(csv), str(mapping)) for _ in range(repeat)),
        key=lambda m: m["validate"] / m["read"],
    )
    middle = ratios[len(ratios) // 2]
    return results, {
        "rows": rows,
        **stage_times,
        "bare_read": middle["read"],
        "in_process": middle["validate"],
    }


def bench_ledger(work: Path, rows: int, nightly_rows: int, repeat: int) -> list[dict]:
    """Issue 9: a nightly file against a ledger holding `rows` rows, and a rerun of those rows.

    Each case `repeat` times, each in a fresh process on a fresh copy of the ledger; the run with
    the median ratio is reported, with the lowest and highest ratio seen."""
    mapping = work / "mapping.yaml"
    mapping.write_text(data.MAPPING_YAML)
    big, nightly = made(work, "csv", rows, 1), made(work, "csv", nightly_rows, 3, name="nightly")
    grown = work / f"grown-{rows}.csv"  # the big file and the nightly rows after it: a changed file
    if not grown.exists():
        with grown.open("wb") as out:
            out.write(big.read_bytes())
            out.write(nightly.read_bytes().split(b"\n", 1)[1])
    # v6: built as `run` builds it: unsettled rows indexed, posted_keys sorted, with prefixes
    ledger_path = work / f"ledger-{rows}-v6.sqlite"
    if not ledger_path.exists():
        child("ledger-build", str(ledger_path), f"{big},{mapping}")
    measured = []
    for kind, source in (("ledger-nightly", nightly), ("ledger-rerun", big), ("ledger-grown", grown)):
        runs = sorted(
            (child(kind, str(ledger_path), f"{source},{mapping},{work}") for _ in range(repeat)),
            key=lambda run: run["ledger"] / run["validate"],
        )
        ratios = [run["ledger"] / run["validate"] for run in runs]
        middle = runs[len(runs) // 2]
        measured.append({"kind": kind, "ledger_rows": rows, "ratios": ratios, **middle})
    return measured


def bench_lookup(activities: int) -> dict:
    return child("lookup", str(activities), "")


# --- sending -------------------------------------------------------------------------------------


def send_data(calls: int, seed: int) -> tuple:
    """Rows over opportunities of 1 to 60 rows each, until the fewest possible calls reach `calls`."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(-(-n // 25) for n in sizes) < calls:
        sizes.append(int(rng.integers(1, 61)))
    ids = data.opportunity_ids(len(sizes), seed)
    rows = sum(sizes)
    table = data.frame(rows, seed=seed, opportunities=ids, bad_share=0)
    table["Opportunity ID"] = [
        opportunity for opportunity, n in zip(ids, sizes, strict=True) for _ in range(n)
    ]
    table = table.sample(frac=1, random_state=seed).reset_index(drop=True)  # opportunities interleave
    minimum = sum(-(-n // 25) for n in sizes)
    return table, ids, minimum


def bench_send(
    work: Path,
    limit: tuple[int, float],
    *,
    calls: int,
    concurrency: int | None,
    latency: tuple[float, float],
    seed: int = 7,
) -> dict:
    """One `lsq-import run` of at least `calls` calls against a sandbox with latency and a limit."""
    from importer.sandbox import Account, Faults, Sandbox  # noqa: PLC0415

    table, ids, minimum = send_data(calls, seed)
    source = data.write_csv(table, work / f"send-{limit[0]}-{limit[1]:g}.csv")
    mapping = work / "mapping.yaml"
    mapping.write_text(data.MAPPING_YAML)
    summary = work / "summary.json"
    account = Account(opportunities=set(ids))
    with (
        serving_without_gc_pauses(),
        Sandbox(account, Faults(latency_ms=latency, seed=seed), rate_limit=limit) as sandbox,
    ):
        env = {
            **os.environ,
            "LSQ_ACCESS_KEY": sandbox.access_key,
            "LSQ_SECRET_KEY": sandbox.secret_key,
            "LSQ_IMPORT_STATE_DIR": str(work / "state"),
            "LSQ_IMPORT_CACHE_DIR": str(work / "cache"),
        }
        args = [
            "run",
            str(source),
            "--mapping",
            str(mapping),
            "--host",
            sandbox.url,
            "--no-progress",
            "--rate-limit",
            f"{limit[0]}/{limit[1]:g}",
            "--summary-json",
            str(summary),
            "--metadata-ttl",
            "0",
            "--journal",
            str(work / f"journal-{time.monotonic_ns()}.sqlite"),
        ]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        run = lsq_import(*args, env=env)
        stats = sandbox.stats
    result = json.loads(summary.read_text())
    arrivals = sorted(stats.arrivals)
    allowed, seconds = limit
    return {
        "limit": f"{allowed}/{seconds:g}",
        "concurrency": concurrency,
        "calls": stats.bulk_calls,
        "minimum": minimum,
        "rate_ratio": achieved_rate(arrivals, allowed) / (allowed / seconds),
        "ceiling_ratio": ceiling_ratio(arrivals, allowed, seconds),
        # the account's limit counts the checks before sending too: every call up to the last bulk one
        "ceiling_ratio_all": ceiling_ratio(
            sorted(t for t in stats.call_arrivals if arrivals and t <= arrivals[-1]), allowed, seconds
        ),
        "calls_before": sum(1 for t in stats.call_arrivals if arrivals and t < arrivals[0]),
        "server_429": stats.throttled,
        "client_429": result["throttled"],
        "posted": result["rows_posted"],
        "rows": len(table),
        "exit_code": result["exit_code"],
        "seconds": run.seconds,
        "send_seconds": arrivals[-1] - arrivals[0] if arrivals else 0.0,
        "ideal_seconds": (-(-len(arrivals) // allowed) - 1) * seconds,
        # the tightest window: how close the run came to an (N + 1)th arrival within S seconds
        "closest_window": min(
            (b - a for a, b in zip(arrivals[:-allowed], arrivals[allowed:], strict=True)), default=None
        ),
    }


@contextlib.contextmanager
def serving_without_gc_pauses() -> Iterator[None]:
    """No cycle collection in this process while its sandbox serves.

    The sandbox keeps every stored activity in memory, and a full collection over them stalled
    every handler thread for up to 80 ms, so arrivals that reached the socket on time were stamped
    late and bunched: measured, the client's requests left within 12 ms of the limiter's slot, the
    sandbox stamped them up to 78 ms after they left. Those stalls are the emulator's, not the
    client's nor LeadSquared's rule; the rule itself (N arrivals in any S seconds, throttled ones
    counted) is unchanged.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def ceiling_ratio(arrivals: list[float], allowed: int, seconds: float) -> float:
    """The limit's ceiling over the span the server saw: floor((n - 1) / N) * S / (last - first arrival).

    The fastest pattern the server accepts sends N calls at once every S seconds, so call k can
    arrive no earlier than floor(k / N) * S after the first: 1.000 is the physical ceiling.
    """
    if len(arrivals) <= allowed:
        return 0.0
    return (len(arrivals) - 1) // allowed * seconds / (arrivals[-1] - arrivals[0])


def achieved_rate(arrivals: list[float], allowed: int) -> float:
    """Calls per second as the server saw them: (n - N) / (mean of last N arrivals - mean of first N).

    Each call after the first N is timed against the call N before it, so the ramp-up of the first
    window counts once, not as a burst. Any arrival pattern the server accepts (no N + 1 arrivals
    within S seconds) gives at most N/S: 1.00 of the limit is the physical ceiling.
    """
    n = len(arrivals)
    if n <= allowed:
        return 0.0
    span = statistics.fmean(arrivals[-allowed:]) - statistics.fmean(arrivals[:allowed])
    return (n - allowed) / span


# --- the table ----------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with_cpuinfo = Path("/proc/cpuinfo")
    if with_cpuinfo.exists():
        models = Counter(
            line.split(":", 1)[1].strip()
            for line in with_cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = ", ".join(models) or cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        memory = f", {kb / 1024 / 1024:.0f} GB RAM"
    return (
        f"{os.cpu_count()} CPUs ({cpu}){memory}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def table(
    validated: list[dict],
    stage_info: dict | None,
    sends: list[dict],
    repeat: int,
    *,
    ledger_info: list[dict] | None = None,
    lookup_info: dict | None = None,
) -> str:
    lines = [f"Machine: {machine()}", ""]
    if validated and stage_info:
        lines += [
            f"Reading and validating (median of {repeat} runs, each in a fresh process):",
            "",
            "| measurement | rows | seconds | rows/s | peak RSS |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for item in validated:
            lines.append(
                f"| {item['what']} | {item['rows']:,} | {item['seconds']:.2f} | "
                f"{item['rows'] / item['seconds']:,.0f} | {item['peak_mb']:,.0f} MB |"
            )
        seconds = {item["key"]: item["seconds"] for item in validated}
        lines += [
            "",
            f"XLSX reading: {seconds['read-openpyxl'] / seconds['read']:.1f}x faster than openpyxl "
            "(same file, same run).",
        ]
        times = stage_info
        base = times["load"] + times["validate"]
        lines += [
            "",
            f"Stages in one process, {times['rows']:,} CSV rows: load {times['load']:.2f} s, validate "
            f"{times['validate']:.2f} s (`validate` does these two, then writes the error workbook); then "
            f"building the rows' bodies and planning the calls {times['plan']:.2f} s "
            f"({times['plan'] / base:.0%} of load + validate), which only `run` does; ledger keys "
            f"{times['keys']:.2f} s ({times['keys'] / base:.0%}), paid before the first call only by a "
            "rerun against a ledger that holds rows (see the ledger table).",
        ]
    if stage_info and "bare_read" in stage_info:
        ratio = stage_info["in_process"] / stage_info["bare_read"]
        cli = next(item["seconds"] for item in validated if item["key"] == "csv")
        xlsx = {item["key"]: item["seconds"] for item in validated}
        lines += [
            "",
            f"Against the baselines in the same run: `validate` of the {stage_info['rows']:,}-row CSV took "
            f"{stage_info['in_process']:.2f} s in one process after a bare `pandas.read_csv(dtype=str)` of "
            f"the same file took {stage_info['bare_read']:.2f} s there: {ratio:.2f}x "
            f"(the whole `lsq-import validate` process, start-up included: {cli / stage_info['bare_read']:.2f}x). "
            f"`validate` of the XLSX: {xlsx['xlsx'] / xlsx['read-openpyxl']:.3f}x an openpyxl read of it.",
        ]
    if ledger_info:
        lines += [
            "",
            "The account ledger before the first call (each in a fresh process; `validate` = load and "
            "validate the file in the same process; rows = building the bodies and planning the calls, "
            "which any run does; ledger = keys, claims and the ledger's word on every row; keys "
            "cached: whether the ledger's key cache held this file's keys from its first run; the run "
            "with the median ratio of several, each in a fresh process, and the range of the ratio):",
            "",
            "| measurement | ledger holds | file rows | validate | rows | keys cached | ledger | ledger / validate | range | peak RSS |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        names = {
            "ledger-nightly": "a nightly file of new rows",
            "ledger-rerun": "a rerun of the file the ledger holds",
            "ledger-grown": "the same file grown by the nightly rows (not cached)",
        }
        for item in ledger_info:
            lines.append(
                f"| {names[item['kind']]} | {item['ledger_rows']:,} | {item['rows_total']:,} | "
                f"{item['validate']:.2f} s | {item['rows']:.2f} s | {'yes' if item['cached'] else 'no'} | "
                f"{item['ledger']:.2f} s | {item['ledger'] / item['validate']:.2f} | "
                f"{min(item['ratios']):.2f}-{max(item['ratios']):.2f} | {item['peak_mb']:,.0f} MB |"
            )
    if lookup_info:
        narrow, everything = lookup_info["since the uncertain call"], lookup_info["everything"]
        lines += [
            "",
            f"Looking up an uncertain row on an opportunity already holding {lookup_info['activities']:,} "
            f"activities of its event: {narrow['read_calls']} read call(s) (newest first, pages of 1,000, "
            f"stopping at activities older than the uncertain call; the row "
            f"{'found' if narrow['has_uncertain_row'] else 'NOT found'}); reading all of them: "
            f"{everything['read_calls']} calls for {everything['found']:,} activities.",
        ]
    if sends:
        lines += [
            "",
            "Sending to the sandbox (latency 100-300 ms per call, limit counted by arrival):",
            "",
            "| limit | concurrency | bulk calls | calls / minimum | achieved rate / limit | span: ceiling / "
            "measured | span with the checks | server 429s | rows posted | send time / ideal |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        default = ImportConfig.__dataclass_fields__["concurrency"].default
        for item in sends:
            workers = item["concurrency"] or default
            lines.append(
                f"| {item['limit']} | {workers}{' (default)' if workers == default else ''} | {item['calls']} | "
                f"{item['calls'] / item['minimum']:.3f} | {item['rate_ratio']:.3f} | {item['ceiling_ratio']:.3f} | "
                f"{item['ceiling_ratio_all']:.3f} ({item['calls_before']} before) | {item['server_429']} ({item['server_429'] / max(1, item['calls']):.1%}) | "
                f"{item['posted']:,}/{item['rows']:,} | {item['send_seconds']:.1f} s / {item['ideal_seconds']:.0f} s |"
            )
        lines += [
            "",
            "Achieved rate = (n - N) / (mean time of the last N arrivals - mean time of the first N), "
            "N/S the limit: any arrival pattern the server accepts scores at most 1.000. Span: "
            "floor((n - 1) / N) * S over the time from the first arrival to the last (also at most 1.000). "
            "Span with the checks: the same over every call of the run up to its last bulk call, the "
            "checks made before sending (who am I, the activity types and settings) included, since "
            "the account's limit counts them too.",
        ]
    return "\n".join(lines)


def parse_limits(text: str) -> list[tuple[int, float]]:
    limits = []
    for part in text.split(","):
        calls, seconds = part.split("/")
        limits.append((int(calls), float(seconds)))
    return limits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny inputs and short runs, to check the bench works"
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="CSV rows to validate")
    parser.add_argument("--xlsx-rows", type=int, default=200_000, help="XLSX rows to validate")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each reading measurement")
    parser.add_argument(
        "--calls",
        default="500,466",
        help="fewest bulk calls of each sending run, comma-separated (500: a multiple of 25, where the "
        "three checks before sending need a window of their own; 466: the count issue 15 measured)",
    )
    parser.add_argument("--limits", default="25/5,25/1", help="rate limits to send at, comma-separated N/S")
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="sender workers to try (repeatable; default: the tool's default)",
    )
    parser.add_argument("--latency", default="100,300", help="sandbox latency range in ms (default 100,300)")
    parser.add_argument("--skip-validate", action="store_true")
    parser.add_argument("--skip-send", action="store_true")
    parser.add_argument("--skip-ledger", action="store_true")
    parser.add_argument("--skip-lookup", action="store_true")
    parser.add_argument("--nightly-rows", type=int, default=50_000, help="rows of the nightly file")
    parser.add_argument(
        "--activities", type=int, default=10_000, help="activities on the looked-up opportunity"
    )
    parser.add_argument(
        "--data", type=Path, help="keep the generated files (and the ledger) here and reuse them next time"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(*args.child)
        return 0
    if args.quick:
        args.rows, args.xlsx_rows, args.repeat, args.calls, args.limits = 2000, 500, 1, "26", "25/1"
        args.nightly_rows, args.activities = 300, 1500
    latency = tuple(float(ms) for ms in args.latency.split(","))
    with tempfile.TemporaryDirectory(prefix="lsq-bench-") as folder:
        work = Path(folder)
        data_dir = args.data or work  # generated inputs and the big ledger: reusable with --data
        data_dir.mkdir(parents=True, exist_ok=True)
        validated, stages = (
            ([], None)
            if args.skip_validate
            else bench_validate(data_dir, args.rows, args.xlsx_rows, args.repeat)
        )
        ledgers = (
            [] if args.skip_ledger else bench_ledger(data_dir, args.rows, args.nightly_rows, args.repeat)
        )
        lookup = None if args.skip_lookup else bench_lookup(args.activities)
        sends = (
            []
            if args.skip_send
            else [
                bench_send(work, limit, calls=calls, concurrency=concurrency, latency=latency)  # type: ignore[arg-type]
                for limit in parse_limits(args.limits)
                for calls in (int(count) for count in args.calls.split(","))
                for concurrency in (args.concurrency or [None])
            ]
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "validate": validated,
                    "stages": stages,
                    "ledger": ledgers,
                    "lookup": lookup,
                    "send": sends,
                },
                indent=2,
            )
        )
    print(table(validated, stages, sends, args.repeat, ledger_info=ledgers, lookup_info=lookup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
