"""The `lsq-import` command: parse arguments, build the config, call the library, print, exit."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from importer import __version__
from importer.errors import ExitStatus, ImporterError, UsageError

log = logging.getLogger("importer")

REPO_ROOT = Path(__file__).resolve().parent.parent


def entrypoint() -> None:
    sys.exit(main())


def main(
    argv: Sequence[str] | None = None,
    environ: dict[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command; return its exit code. Never lets a traceback reach the user."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    env = dict(os.environ if environ is None else environ)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage or help
        return ExitStatus.OK if exc.code == 0 else ExitStatus.INPUT_ERROR
    handler: list[logging.Handler] = []
    try:
        handler = _setup_logging(args, err)
        return int(args.command(args, env, out, err))
    except ImporterError as exc:
        print(f"lsq-import: error: {exc}", file=err)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        print("lsq-import: interrupted before anything was sent", file=err)
        return int(ExitStatus.INTERRUPTED)
    except Exception as exc:  # a bug: say so plainly, keep the traceback for the log file
        log.debug("unexpected error", exc_info=True)
        print(
            f"lsq-import: unexpected error ({type(exc).__name__}): {exc}. "
            "Please report it with the output of --log-file.",
            file=err,
        )
        return int(ExitStatus.INPUT_ERROR)
    finally:
        _teardown_logging(handler)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsq-import",
        description="Import CSV and Excel spreadsheets into LeadSquared as activities on opportunities.",
        epilog="Exit codes: 0 all rows posted; 1 some rows failed or unknown; 2 usage, mapping or "
        "input error (nothing sent); 3 API unusable (bad keys, host unreachable); 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"lsq-import {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="validate a sheet, check it against the account, post its rows")
    _add_input_options(run)
    run.set_defaults(input=None)
    _add_send_options(run)
    _add_run_options(run)
    _add_metadata_options(run)
    run.set_defaults(command=_cmd_run)

    validate = commands.add_parser("validate", help="read, map, validate and plan a sheet; sends nothing")
    _add_input_options(validate)
    validate.add_argument(
        "--online",
        action="store_true",
        help="also check keys, host, mapping and rows against the account (sends no activity)",
    )
    _add_send_options(validate)
    _add_metadata_options(validate)
    validate.set_defaults(command=_cmd_validate)

    check = commands.add_parser("check", help="check the API keys and host: whose keys, which API host")
    _add_send_options(check)
    _add_logging_options(check)
    check.set_defaults(command=_cmd_check)

    init = commands.add_parser("init-mapping", help="print a commented starter mapping guessed from a sheet")
    init.add_argument("input", type=Path, help="the spreadsheet: .csv, .xlsx, .xlsm, .xls or .ods")
    init.add_argument(
        "--activity-event", required=True, help='activity event code (201) or name ("Site Visit")'
    )
    init.add_argument("--sheet", help="workbook sheet to read (default: the first)")
    init.add_argument(
        "--online",
        action="store_true",
        help="match columns to the activity type's fields by display name (needs keys and host)",
    )
    _add_send_options(init)
    _add_metadata_options(init)
    _add_logging_options(init)
    init.set_defaults(command=_cmd_init_mapping)

    sandbox = commands.add_parser("sandbox", help="serve the local LeadSquared emulator")
    sandbox.add_argument(
        "--port", type=int, default=8765, help="port to listen on (default 8765; 0 picks a free one)"
    )
    sandbox.add_argument(
        "--rate-limit", default="25/5", help="the emulator's own limit, calls/seconds (default 25/5)"
    )
    _add_logging_options(sandbox)
    sandbox.set_defaults(command=_cmd_sandbox)

    demo = commands.add_parser("demo", help="import the sample data into an in-process sandbox")
    demo.add_argument(
        "--errors",
        type=Path,
        default=Path("activities.errors.xlsx"),
        help="where to write the error workbook (default ./activities.errors.xlsx)",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_logging_options(demo)
    demo.set_defaults(command=_cmd_demo)
    return parser


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="the spreadsheet: .csv, .xlsx, .xlsm, .xls or .ods")
    parser.add_argument("--mapping", "-m", type=Path, required=True, help="the mapping YAML file")
    parser.add_argument("--sheet", help="workbook sheet to read (default: the first)")
    parser.add_argument(
        "--batch-size", type=int, default=25, help="activities per call, 1 to 25 (default 25)"
    )
    parser.add_argument(
        "--errors", type=Path, help="error workbook path (default <input>.errors.xlsx beside the input)"
    )
    parser.add_argument("--summary-json", type=Path, help="also write the run's counts as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_logging_options(parser)


def _add_send_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", help="API host, e.g. api-in21.leadsquared.com, or a URL (default: $LSQ_HOST)"
    )
    parser.add_argument(
        "--rate-limit",
        help="at most N calls in S seconds, as N/S (default 25/5, or what LeadSquared told this account)",
    )
    parser.add_argument(
        "--daily-limit",
        type=int,
        help="calls a day this account may make (remembered; default: what the last cap showed)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for an answer (default 60)"
    )
    parser.add_argument("--ca-bundle", help="CA certificate file for a TLS-inspecting corporate proxy")
    parser.add_argument(
        "--retries",
        type=int,
        default=7,
        help="retries of a call that is safe to repeat (429, connection refused); default 7",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="calls in flight at once, sharing the rate limit (default 8)",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        help="the run journal (default: one per input, mapping and host under "
        "$LSQ_IMPORT_STATE_DIR, else ~/.local/state/lsq-import/journals)",
    )
    parser.add_argument(
        "--no-journal",
        action="store_true",
        help="keep no journal: nothing is skipped, unknown outcomes are not checked on the next run",
    )
    parser.add_argument(
        "--resend",
        action="store_true",
        help="send every valid row again, even those the journal says were posted",
    )
    parser.add_argument(
        "--archive",
        type=Path,
        help="move each fully processed input file (and its error workbook) into this folder",
    )


def _add_metadata_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="where the account's metadata is kept (default $LSQ_IMPORT_CACHE_DIR, else ~/.cache/lsq-import)",
    )
    parser.add_argument(
        "--metadata-ttl",
        type=float,
        metavar="HOURS",
        help="reuse the kept metadata for this many hours (default 12; 0 fetches every time)",
    )
    parser.add_argument(
        "--refresh-metadata", action="store_true", help="fetch the account's metadata again now"
    )


def _add_logging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--log-file", type=Path, help="also write the log to this file")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per line on stderr and in the log file, and the "
        "summary as one JSON line on stdout",
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, ensure_ascii=False, default=str)


def _setup_logging(args: argparse.Namespace, err: TextIO) -> list[logging.Handler]:
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    handlers: list[logging.Handler] = [logging.StreamHandler(err)]
    if args.log_file:
        try:
            handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--log-file {args.log_file}: cannot be written ({exc.strerror})") from None
    formatter = (
        JsonFormatter()
        if args.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(level)
    return handlers


def _teardown_logging(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        log.removeHandler(handler)
        handler.close()


def _config(args: argparse.Namespace, **extra: object):
    from importer.runner import ImportConfig

    return ImportConfig(
        input_path=args.input,
        mapping_path=args.mapping,
        sheet=args.sheet,
        batch_size=args.batch_size,
        errors_path=args.errors,
        summary_json=args.summary_json,
        **extra,
    )


def _show_progress(args: argparse.Namespace, err: TextIO) -> bool:
    return not args.no_progress and err.isatty()


def _connection(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """The ImportConfig keywords for talking to LeadSquared, from the send options and the environment."""
    from importer.client import HOST_ENV, Credentials
    from importer.throttle import RateLimit

    host = args.host or env.get(HOST_ENV)
    if not host:
        raise UsageError("no host: use --host (e.g. api-in21.leadsquared.com) or set LSQ_HOST")
    if args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    if args.ca_bundle and not Path(args.ca_bundle).is_file():
        raise UsageError(
            f"--ca-bundle {args.ca_bundle}: no such file (give the proxy's CA certificate, a PEM file)"
        )
    return {
        "host": host,
        "credentials": Credentials.from_env(env),
        "rate_limit": RateLimit.parse(args.rate_limit or "25/5"),
        "timeout": (min(10.0, args.timeout), args.timeout),
        "ca_bundle": args.ca_bundle,
        "max_attempts": args.retries + 1,
    }


def _daily_limit(args: argparse.Namespace) -> int | None:
    if args.daily_limit is not None and args.daily_limit < 1:
        raise UsageError(f"--daily-limit must be a number of calls, 1 or more, got {args.daily_limit}")
    return args.daily_limit  # type: ignore[no-any-return]


def _metadata_settings(args: argparse.Namespace, env: dict[str, str]):
    from importer.metadata import DEFAULT_TTL_HOURS, MetadataSettings, default_cache_dir

    ttl = DEFAULT_TTL_HOURS if args.metadata_ttl is None else args.metadata_ttl
    if ttl < 0:
        raise UsageError("--metadata-ttl must be 0 or more hours")
    return MetadataSettings(args.cache_dir or default_cache_dir(env), ttl, args.refresh_metadata)


def _open_client(args: argparse.Namespace, env: dict[str, str]):
    """A client, the run's rate limiter and the attempts per call, for the commands that only read."""
    from importer.client import LsqClient
    from importer.throttle import RateLimiter

    connection = _connection(args, env)
    client = LsqClient(
        connection["host"],
        connection["credentials"],
        timeout=connection["timeout"],
        ca_bundle=connection["ca_bundle"],
    )
    return client, RateLimiter(connection["rate_limit"]), connection["max_attempts"]


def _cmd_run(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    try:
        return _run_inputs(args, env, out, err)
    except ImporterError as exc:  # a nightly job's --summary-json must not keep yesterday's counts
        if args.summary_json:
            from importer.atomic import write_json_atomically

            with contextlib.suppress(ImporterError):
                write_json_atomically(
                    args.summary_json,
                    {"input": str(args.input), "error": str(exc), "exit_code": int(exc.exit_status)},
                )
        raise


def _run_inputs(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    from importer.schedule import check_archive_dir, expand_inputs

    pattern = str(args.input)
    inputs = expand_inputs(pattern)
    if not inputs:
        print(f"lsq-import: no file matches '{pattern}': nothing to do", file=err)
        return int(ExitStatus.OK)
    if len(inputs) > 1 and (args.errors or args.journal):
        raise UsageError("--errors and --journal name one file; with a pattern each input gets its own")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be 1 or more")
    if args.archive:
        check_archive_dir(args.archive)
    connection = _connection(args, env)
    summaries = []
    worst = ExitStatus.OK
    for path in inputs:
        try:
            status, summary = _run_one(args, path, env, connection, out=out, err=err)
        except ImporterError as exc:  # this file is unusable; the others still run
            if len(inputs) == 1:
                raise
            print(f"lsq-import: error: {exc}", file=err)
            status, summary = (
                exc.exit_status,
                {"input": str(path), "error": str(exc), "exit_code": int(exc.exit_status)},
            )
        summaries.append(summary)
        worst = max(worst, status, key=_severity)
        if status in (ExitStatus.INTERRUPTED, ExitStatus.API_UNUSABLE):
            break  # the account or the user said stop: the next file would stop too
    if args.summary_json and _is_pattern(args):  # a pattern: one summary listing every file
        from importer.atomic import write_json_atomically

        write_json_atomically(args.summary_json, {"files": summaries, "exit_code": int(worst)})
    return int(worst)


def _severity(status: ExitStatus) -> int:
    return [
        ExitStatus.OK,
        ExitStatus.ROWS_FAILED,
        ExitStatus.INPUT_ERROR,
        ExitStatus.API_UNUSABLE,
        ExitStatus.INTERRUPTED,
    ].index(status)


def _run_one(
    args: argparse.Namespace,
    path: Path,
    env: dict[str, str],
    connection: dict[str, Any],
    *,
    out: TextIO,
    err: TextIO,
) -> tuple[ExitStatus, dict[str, object]]:
    from importer.client import base_url
    from importer.journal import default_journal_path, state_dir
    from importer.runner import ImportConfig, run_import
    from importer.schedule import ERROR_REPORT_SUFFIX, archive_name, move_to_archive

    started = datetime.now(UTC)
    archived = archive_name(path, args.archive, started) if args.archive else None
    errors_path = args.errors or (
        archived.with_name(archived.stem + ERROR_REPORT_SUFFIX) if archived else None
    )
    journal = args.journal or default_journal_path(path, args.mapping, base_url(connection["host"]), env)
    config = ImportConfig(
        input_path=path,
        mapping_path=args.mapping,
        sheet=args.sheet,
        batch_size=args.batch_size,
        errors_path=errors_path,
        summary_json=args.summary_json if not _is_pattern(args) else None,
        metadata=_metadata_settings(args, env),
        progress=_show_progress(args, err),
        concurrency=args.concurrency,
        journal_path=journal,
        use_journal=not args.no_journal,
        resend=args.resend,
        rate_limit_explicit=args.rate_limit is not None,
        daily_limit=_daily_limit(args),
        state_dir=state_dir(env),
        **connection,
    )
    if archived:
        archived.parent.mkdir(parents=True, exist_ok=True)
    result = run_import(config)
    summary = {"input": str(path), **result.summary()}
    settled = not (result.rows_unknown or result.rows_not_sent or result.stop_reason or result.interrupted)
    if archived and settled:
        summary["archived_to"] = str(move_to_archive(path, archived))
    _print_summary(result, path, out, json_lines=args.log_format == "json", summary=summary)
    if result.stop_reason:
        print(f"lsq-import: error: {result.stop_reason}", file=err)
    return result.exit_status, summary


def _is_pattern(args: argparse.Namespace) -> bool:
    import glob

    return glob.has_magic(str(args.input))


def _cmd_validate(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    from importer.runner import validate_file

    extra: dict[str, Any] = {}
    if args.online:
        extra = {**_connection(args, env), "metadata": _metadata_settings(args, env), "online": True}
    else:
        _note_named_event(args.mapping, err)
    result = validate_file(_config(args, **extra))
    valid = result.rows_total - result.rows_failed
    print(f"{args.input}: {result.rows_total} rows, {valid} valid, {result.rows_failed} invalid", file=out)
    print(f"Would send {valid} activities in {result.calls} calls (nothing was sent)", file=out)
    if result.error_report:
        print(f"Error workbook: {result.error_report}", file=out)
    return int(result.exit_status)


def _note_named_event(mapping_path: Path, err: TextIO) -> None:
    from importer.mapping import load_mapping

    name = load_mapping(mapping_path).activity_event.name
    if name is not None:
        print(
            f"lsq-import: note: activity_event.name '{name}' is looked up in the account only with --online; "
            "the other columns are checked now",
            file=err,
        )


def _cmd_check(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    from importer.metadata import check_keys, region_problem

    client, limiter, attempts = _open_client(args, env)
    try:
        identity = check_keys(client, limiter, attempts)
    finally:
        client.close()
    print(f"Keys of {identity.user}" + (f", org {identity.org}" if identity.org else ""), file=out)
    print(f"Account API host: {identity.api_host or '(not reported)'}", file=out)
    problem = region_problem(identity, client.base_url)
    if problem:
        print(f"lsq-import: error: {problem}", file=err)
        return int(ExitStatus.API_UNUSABLE)
    print(f"OK: {client.base_url} accepts these keys", file=out)
    return int(ExitStatus.OK)


def _cmd_init_mapping(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    from importer.init_mapping import starter_mapping
    from importer.loader import load_sheet

    sheet = load_sheet(args.input, args.sheet)
    text = args.activity_event.strip()
    event: int | str = int(text) if text.isdigit() else text
    activity = _online_activity(args, env, event) if args.online else None
    starter = starter_mapping(sheet, event, activity)
    out.write(starter.text)
    for note in starter.notes:
        print(f"lsq-import: note: {note}", file=err)
    return int(ExitStatus.OK)


def _online_activity(args: argparse.Namespace, env: dict[str, str], event: int | str):
    from importer.metadata import open_account

    client, limiter, attempts = _open_client(args, env)
    try:
        account = open_account(client, _metadata_settings(args, env), limiter=limiter, attempts=attempts)
        try:
            code = account.code_of(event)
        except ValueError as exc:
            raise UsageError(f"--activity-event: {exc}") from None
        return account.activity(code)
    finally:
        client.close()


def _cmd_sandbox(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    from importer.sandbox import Sandbox
    from importer.throttle import RateLimit

    limit = RateLimit.parse(args.rate_limit)
    with Sandbox(rate_limit=(limit.calls, limit.seconds), port=args.port) as sandbox:
        print(f"LeadSquared sandbox at {sandbox.url} (rate limit {limit}); Ctrl-C stops it.", file=out)
        print(f"  export LSQ_HOST={sandbox.url}", file=out)
        print(
            f"  export LSQ_ACCESS_KEY='{sandbox.access_key}' LSQ_SECRET_KEY='{sandbox.secret_key}'", file=out
        )
        out.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("sandbox stopped", file=out)
    return int(ExitStatus.OK)


def _cmd_demo(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    from importer.client import Credentials
    from importer.runner import ImportConfig, run_import
    from importer.sandbox import Sandbox
    from importer.throttle import RateLimit

    sample = REPO_ROOT / "sample_data" / "activities.csv"
    mapping = REPO_ROOT / "mappings" / "example.yaml"
    if not sample.is_file() or not mapping.is_file():
        raise UsageError(
            f"the demo needs the repository's sample_data/ and mappings/ (looked in {REPO_ROOT}); "
            "install from a clone with: pip install -e ."
        )
    with Sandbox(rate_limit=(25, 1.0)) as sandbox:
        print(
            f"Sandbox running at {sandbox.url}; importing {sample.relative_to(REPO_ROOT)} "
            f"with {mapping.relative_to(REPO_ROOT)}",
            file=out,
        )
        config = ImportConfig(
            input_path=sample,
            mapping_path=mapping,
            host=sandbox.url,
            credentials=Credentials(sandbox.access_key, sandbox.secret_key),
            rate_limit=RateLimit(25, 1.0),
            errors_path=args.errors,
            progress=_show_progress(args, err),
            use_journal=False,  # a fresh sandbox every time: there is nothing to resume
        )
        result = run_import(config)
        stored = len(sandbox.activities())
    _print_summary(result, sample, out)
    print(f"The sandbox now holds {stored} activities.", file=out)
    if result.error_report:
        print("Open the error workbook to see each failed row, the reason, and the cell to fix.", file=out)
    return int(
        ExitStatus.OK if result.exit_status in {ExitStatus.OK, ExitStatus.ROWS_FAILED} else result.exit_status
    )


def _print_summary(
    result,
    input_path: Path,
    out: TextIO,
    *,
    json_lines: bool = False,
    summary: dict[str, object] | None = None,
) -> None:
    if json_lines:
        print(json.dumps({"event": "summary", **(summary or result.summary())}, default=str), file=out)
        return
    by_stage: dict[str, int] = {}
    for _row, stage in {(e.source_row, e.stage.value) for e in result.errors}:
        by_stage[stage] = by_stage.get(stage, 0) + 1
    lines = [
        f"{input_path}: {result.rows_total} rows",
        f"  posted    {result.rows_posted:>7}",
        f"  skipped   {result.rows_skipped:>7}  (already posted by an earlier run)"
        if result.rows_skipped
        else None,
        f"  failed    {result.rows_failed:>7}  (validation {by_stage.get('validation', 0)}, "
        f"rejected by LeadSquared {by_stage.get('api', 0)})",
        f"  unknown   {result.rows_unknown:>7}  (sent, outcome unknown: the next run checks LeadSquared "
        "before sending them again)"
        if result.rows_unknown
        else None,
        f"  not sent  {result.rows_not_sent:>7}" if result.rows_not_sent else None,
        f"Calls: {result.calls} (throttled {result.throttled}, retries {result.retries}) in {result.elapsed_s:.1f} s",
        f"Error workbook: {result.error_report}"
        if result.error_report
        else f"Error workbook NOT written: {result.report_problem}"
        if result.report_problem
        else "No errors: no error workbook written.",
    ]
    print("\n".join(line for line in lines if line is not None), file=out)
