"""The `lsq-import` command: parse arguments, build the config, call the library, print, exit."""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import json
import logging
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from importer import sheet_prefetch
from importer._logjson import JsonFormatter, JsonLines
from importer._version import __version__
from importer.errors import ExitStatus, ImporterError, UsageError
from importer.terminal import ProgressBar, TerminalHandler

if TYPE_CHECKING:
    from importer.account import ActivityMeta, Connection, MetadataSettings
    from importer.events import CancelToken
    from importer.runner import ImportConfig, ImportResult

log = logging.getLogger("importer")

# Library errors name config fields (ImportConfig(batch_size=30): "batch_size must be ..."); the
# CLI says which flag or variable sets them.
_FLAGS = {
    "batch_size": "--batch-size",
    "concurrency": "--concurrency",
    "errors_path": "--errors",
    "journal_path": "--journal",
    "archive_dir": "--archive",
    "summary_json": "--summary-json",
    "max_attempts": "--retries",
    "host": "--host",
    "credentials": "LSQ_ACCESS_KEY and LSQ_SECRET_KEY",
}
_FIELD_NAMES = re.compile(
    r"^(?:host|credentials|concurrency)\b"
    r"|\b(?:batch_size|errors_path|journal_path|archive_dir|summary_json|max_attempts)\b"
)


def _as_flags(message: str) -> str:
    """A library message in the CLI's words: config field names become the flags that set them."""
    return _FIELD_NAMES.sub(lambda match: _FLAGS[match.group(0)], message)


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
    except _ParseError as exc:  # a mistyped option in a nightly job: one JSON line under --log-format json
        json_lines = _wants_json(sys.argv[1:] if argv is None else argv)
        stream = JsonLines(err) if json_lines else err
        print(exc.message if json_lines else f"{exc.usage}{exc.message}", file=stream)
        return ExitStatus.INPUT_ERROR
    except SystemExit as exc:  # argparse already printed help or the version
        return ExitStatus.OK if exc.code == 0 else ExitStatus.INPUT_ERROR
    handler: list[logging.Handler] = []
    if args.log_format == "json":  # every line JSON, stdout too (but not init-mapping's YAML)
        err = JsonLines(err)
        out = out if args.command is _cmd_init_mapping else JsonLines(out)
    try:
        handler = _setup_logging(args, err)
        return int(args.command(args, env, out, err))
    except ImporterError as exc:
        print(f"lsq-import: error: {_as_flags(str(exc))}", file=err)
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
        for stream in (out, err):
            if isinstance(stream, JsonLines):
                stream.finish()


class _ParseError(Exception):
    def __init__(self, usage: str, message: str) -> None:
        super().__init__(message)
        self.usage, self.message = usage, message


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is raised, for main() to print in the chosen log format."""

    def error(self, message: str) -> NoReturn:
        raise _ParseError(self.format_usage(), f"{self.prog}: error: {message}")


def _wants_json(argv: Sequence[str]) -> bool:
    words = list(argv)
    return "--log-format=json" in words or any(
        a == "--log-format" and b == "json" for a, b in itertools.pairwise(words)
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lsq-import",
        description="Import CSV and Excel spreadsheets into LeadSquared as activities on opportunities.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lsq-import {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = _command(commands, "run", "validate a sheet, check it against the account, post its rows")
    _add_input_options(run)
    run.set_defaults(input=None)
    _add_send_options(run)
    _add_run_options(run)
    _add_metadata_options(run)
    run.set_defaults(command=_cmd_run)

    validate = _command(commands, "validate", "read, map, validate and plan a sheet; sends nothing")
    _add_input_options(validate)
    validate.add_argument(
        "--online",
        action="store_true",
        help="also check keys, host, mapping and rows against the account (sends no activity)",
    )
    _add_send_options(validate)
    _add_metadata_options(validate)
    validate.set_defaults(command=_cmd_validate)

    check = _command(commands, "check", "check the API keys and host: whose keys, which API host")
    _add_send_options(check)
    _add_logging_options(check)
    check.set_defaults(command=_cmd_check)

    init = _command(commands, "init-mapping", "print a commented starter mapping guessed from a sheet")
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

    sandbox = _command(commands, "sandbox", "serve the local LeadSquared emulator")
    sandbox.add_argument(
        "--port", type=int, default=8765, help="port to listen on (default 8765; 0 picks a free one)"
    )
    sandbox.add_argument(
        "--rate-limit", default="25/5", help="the emulator's own limit, calls/seconds (default 25/5)"
    )
    _add_logging_options(sandbox)
    sandbox.set_defaults(command=_cmd_sandbox)

    demo = _command(commands, "demo", "import the sample data into an in-process sandbox")
    demo.add_argument(
        "--errors",
        type=Path,
        default=Path("activities.errors.xlsx"),
        help="where to write the error workbook (default ./activities.errors.xlsx)",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_logging_options(demo)
    demo.set_defaults(command=_cmd_demo)

    serve = _command(commands, "serve", "start the web page: upload, map, preview, import")
    serve.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)"
    )
    serve.add_argument(
        "--mappings", type=Path, default=Path("mappings"), help="folder of mapping files (default ./mappings)"
    )
    serve.add_argument(
        "--bind",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; others need LSQ_WEB_PASSWORD)",
    )
    serve.add_argument(
        "--sandbox", action="store_true", help="run against the built-in sandbox, not LeadSquared"
    )
    _add_logging_options(serve)
    serve.set_defaults(command=_cmd_serve)
    return parser


_ENVIRONMENT = """\
environment:
  LSQ_ACCESS_KEY, LSQ_SECRET_KEY  the API keys (Settings > API and Webhooks); never on the command line
  LSQ_HOST                        the account's API host, e.g. api-in21.leadsquared.com (or --host)
  LSQ_IMPORT_STATE_DIR            where the ledgers live (default ~/.local/state/lsq-import)
  LSQ_IMPORT_CACHE_DIR            where the account's metadata is kept (default ~/.cache/lsq-import)"""

_EPILOG = f"""\
{_ENVIRONMENT}

examples:
  lsq-import demo
  lsq-import check
  lsq-import init-mapping visits.xlsx --activity-event 201 --online > mappings/visits.yaml
  lsq-import validate visits.xlsx --mapping mappings/visits.yaml --online
  lsq-import run visits.xlsx --mapping mappings/visits.yaml
  lsq-import COMMAND --help      options of one command, with an example

exit codes: 0 all rows posted; 1 some rows failed or unknown; 2 usage, mapping or input error
  (nothing sent); 3 API unusable (bad keys, host unreachable); 4 ledger unusable; 130 interrupted
  (Ctrl-C or SIGTERM)"""

_EXAMPLES = {
    "run": "lsq-import run visits.xlsx --mapping mappings/visits.yaml\n"
    "  lsq-import run 'incoming/*.xlsx' --mapping mappings/visits.yaml --archive archive "
    "--log-format json --summary-json logs/last.json",
    "validate": "lsq-import validate visits.xlsx --mapping mappings/visits.yaml           # offline\n"
    "  lsq-import validate 'incoming/*.xlsx' --mapping mappings/visits.yaml --online",
    "check": "lsq-import check --host api-in21.leadsquared.com",
    "init-mapping": "lsq-import init-mapping visits.xlsx --activity-event 201 --online > mappings/visits.yaml",
    "sandbox": "lsq-import sandbox --port 8765      # then: export the three lines it prints",
    "demo": "lsq-import demo",
    "serve": "lsq-import serve --sandbox         # or: lsq-import serve (your account)",
}
_NEEDS_KEYS = {"run", "check", "validate", "init-mapping", "serve"}


def _command(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with an example and, when it talks to an account, the variables."""
    epilog = f"example:\n  {_EXAMPLES[name]}"
    if name in _NEEDS_KEYS:
        epilog += f"\n\n{_ENVIRONMENT}"
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
        default=25,
        help="calls in flight at once, sharing the rate limit (default 25)",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        help="the ledger file (default: one per LeadSquared account, host + org id, under "
        "$LSQ_IMPORT_STATE_DIR, else ~/.local/state/lsq-import/ledgers)",
    )
    parser.add_argument(
        "--no-journal",
        action="store_true",
        help="keep no ledger: nothing is skipped, and a rerun may post the same rows again",
    )
    parser.add_argument(
        "--resend",
        action="store_true",
        help="send every valid row again, even those the ledger says are in LeadSquared",
    )
    parser.add_argument(
        "--settle-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="after a call of uncertain outcome, wait this long for LeadSquared's reads to catch up "
        "before looking its rows up (default 30)",
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


def _setup_logging(args: argparse.Namespace, err: TextIO) -> list[logging.Handler]:
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    json_lines = args.log_format == "json"
    # people read stderr: plain lines above the progress bar; the log file keeps time and source
    handlers: list[logging.Handler] = [logging.StreamHandler(err) if json_lines else TerminalHandler(err)]
    if args.log_file:
        try:
            args.log_file.parent.mkdir(parents=True, exist_ok=True)  # a fresh machine has no logs/ yet
            handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--log-file {args.log_file}: cannot be written ({exc.strerror})") from None
    for handler in handlers:
        if json_lines:
            handler.setFormatter(JsonFormatter())
        elif not isinstance(handler, TerminalHandler):
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    return handlers


def _teardown_logging(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        log.removeHandler(handler)
        handler.close()


def _config(args: argparse.Namespace, **extra: Any) -> ImportConfig:
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


def _connection(args: argparse.Namespace, env: dict[str, str]) -> Connection:
    """How to reach the account, from the send options and the environment."""
    from importer.account import Connection
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
    return Connection(
        host=host,
        credentials=Credentials.from_env(env),
        rate_limit=RateLimit.parse(args.rate_limit or "25/5"),
        timeout=(min(10.0, args.timeout), args.timeout),
        ca_bundle=args.ca_bundle,
        max_attempts=args.retries + 1,
    )


def _connection_options(connection: Connection) -> dict[str, Any]:
    """The ImportConfig keywords of a connection."""
    return {
        "host": connection.host,
        "credentials": connection.credentials,
        "rate_limit": connection.rate_limit,
        "timeout": connection.timeout,
        "ca_bundle": connection.ca_bundle,
        "max_attempts": connection.max_attempts,
    }


def _daily_limit(args: argparse.Namespace) -> int | None:
    if args.daily_limit is not None and args.daily_limit < 1:
        raise UsageError(f"--daily-limit must be a number of calls, 1 or more, got {args.daily_limit}")
    return args.daily_limit  # type: ignore[no-any-return]


def _metadata_settings(args: argparse.Namespace, env: dict[str, str]) -> MetadataSettings:
    from importer.account import DEFAULT_TTL_HOURS, MetadataSettings, default_cache_dir

    ttl = DEFAULT_TTL_HOURS if args.metadata_ttl is None else args.metadata_ttl
    if ttl < 0:
        raise UsageError("--metadata-ttl must be 0 or more hours")
    return MetadataSettings(args.cache_dir or default_cache_dir(env), ttl, args.refresh_metadata)


@contextlib.contextmanager
def cancel_on_signals(token: CancelToken, bar: ProgressBar) -> Iterator[None]:
    """While a run works, Ctrl-C (SIGINT) and SIGTERM call `token.cancel()` instead of raising.

    A KeyboardInterrupt can land between any two bytecodes, say while the sender starts its
    threads or while the workbook is written, and lose the record of calls already made; a
    handler that only cancels cannot. The first signal stops starting calls (before sending:
    sends nothing), and the workbook and summary are still written; a second one stops waiting
    for answers in flight or, before any row went out, stops at once. Only the main thread can
    set a signal handler; elsewhere the default behaviour remains.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        token.cancel()
        if token.urgent and not bar.sending:
            raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _cmd_run(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    try:
        return _run_inputs(args, env, out, err)
    except ImporterError as exc:  # a nightly job's --summary-json must not keep yesterday's counts
        if args.summary_json:
            from importer.atomic import prepare_folder, write_json_atomically

            try:
                prepare_folder(args.summary_json, "the summary")  # a fresh machine has no logs/ yet
                write_json_atomically(
                    args.summary_json,
                    {
                        "input": str(args.input),
                        "error": _as_flags(str(exc)),
                        "exit_code": int(exc.exit_status),
                        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    },
                )
            except ImporterError as problem:
                print(f"lsq-import: error: summary NOT written: {problem}", file=err)
        raise


def _run_inputs(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    sheet_prefetch.start(args.input, args.sheet)  # parsed on the other core while the rest imports
    from importer.events import CancelToken
    from importer.runs import run_pattern

    pattern = str(args.input)
    token = CancelToken()
    bar = ProgressBar(err if _show_progress(args, err) else None)
    config = _config(
        args,
        metadata=_metadata_settings(args, env),
        concurrency=args.concurrency,
        journal_path=args.journal,
        use_journal=not args.no_journal,
        resend=args.resend,
        state_environ=env,
        **_settle_option(args),
        rate_limit_explicit=args.rate_limit is not None,
        daily_limit=_daily_limit(args),
        on_progress=bar,
        cancel=token,
        **_connection_options(_connection(args, env)),
    )
    json_lines = args.log_format == "json"

    def file_done(path: Path, outcome: ImportResult | ImporterError, summary: dict[str, object]) -> None:
        bar.close()
        if isinstance(outcome, ImporterError):
            print(f"lsq-import: error: {_as_flags(str(outcome))}", file=err)
            return
        _print_summary(outcome, path, out, json_lines=json_lines, summary=summary)
        if outcome.stop_reason:
            print(f"lsq-import: error: {outcome.stop_reason}", file=err)
        if not json_lines:
            for line in _next_steps(outcome, args.mapping):
                print(line, file=out)

    with cancel_on_signals(token, bar):
        try:
            result = run_pattern(
                config, pattern, archive_dir=args.archive, environ=env, on_file_done=file_done
            )
        finally:
            bar.close()
    if not result.summaries:
        print(f"lsq-import: no file matches '{pattern}': nothing to do", file=err)
    return int(result.exit_status)


def _settle_option(args: argparse.Namespace) -> dict[str, float]:
    if args.settle_time is None:
        return {}
    if args.settle_time < 0:
        raise UsageError("--settle-time must be 0 or more seconds")
    return {"settle_s": args.settle_time}


def _cmd_validate(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    sheet_prefetch.start(args.input, args.sheet)  # parsed on the other core while the rest imports
    from importer.runs import validate_pattern

    extra: dict[str, Any] = {}
    if args.online:
        extra = {
            **_connection_options(_connection(args, env)),
            "metadata": _metadata_settings(args, env),
            "online": True,
        }
    else:
        _note_named_event(args.mapping, err)

    def file_done(path: Path, outcome: ImportResult | ImporterError, summary: dict[str, object]) -> None:
        if isinstance(outcome, ImporterError):
            print(f"lsq-import: error: {_as_flags(str(outcome))}", file=err)
            return
        valid = outcome.rows_total - outcome.rows_failed
        print(f"{path}: {outcome.rows_total} rows, {valid} valid, {outcome.rows_failed} invalid", file=out)
        print(f"Would send {valid} activities in {outcome.calls} calls (nothing was sent)", file=out)
        if outcome.error_report:
            print(f"Error workbook: {outcome.error_report}", file=out)

    result = validate_pattern(_config(args, **extra), str(args.input), on_file_done=file_done)
    if not result.summaries:
        print(f"lsq-import: no file matches '{args.input}': nothing to do", file=err)
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
    from importer.account import check_connection

    checked = check_connection(_connection(args, env))
    identity = checked.identity
    print(f"Keys of {identity.user}" + (f", org {identity.org}" if identity.org else ""), file=out)
    print(f"Account API host: {identity.api_host or '(not reported)'}", file=out)
    if checked.problem:
        print(f"lsq-import: error: {checked.problem}", file=err)
        return int(ExitStatus.API_UNUSABLE)
    print(f"OK: {checked.base_url} accepts these keys", file=out)
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


def _online_activity(args: argparse.Namespace, env: dict[str, str], event: int | str) -> ActivityMeta:
    from importer.account import activity_of

    try:
        return activity_of(_connection(args, env), _metadata_settings(args, env), event)
    except ValueError as exc:
        raise UsageError(f"--activity-event: {exc}") from None


def _cmd_sandbox(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    from importer.sandbox import Sandbox
    from importer.throttle import RateLimit

    limit = RateLimit.parse(args.rate_limit)
    try:
        server = Sandbox(rate_limit=(limit.calls, limit.seconds), port=args.port).start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise UsageError(
            f"port {args.port} is already in use (a sandbox started earlier still running?): stop that "
            f"one, or pick another port: --port {args.port + 1}, or --port 0 for any free one"
        ) from None
    with server as sandbox:
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
    from importer.demo import run_demo
    from importer.events import CancelToken

    def ready(url: str, sample: Path, mapping: Path) -> None:
        print(f"Sandbox running at {url}; importing {sample.name} with {mapping.name}", file=out)

    token = CancelToken()
    bar = ProgressBar(err if _show_progress(args, err) else None)
    with cancel_on_signals(token, bar):
        try:
            demo = run_demo(args.errors, on_progress=bar, cancel=token, on_ready=ready)
        finally:
            bar.close()
    result = demo.result
    _print_summary(result, Path(demo.sample.name), out)
    print(f"The sandbox now holds {demo.stored} activities.", file=out)
    if result.error_report:
        print("Open the error workbook to see each failed row, the reason, and the cell to fix.", file=out)
    return int(
        ExitStatus.OK if result.exit_status in {ExitStatus.OK, ExitStatus.ROWS_FAILED} else result.exit_status
    )


def _cmd_serve(args: argparse.Namespace, env: dict[str, str], out: TextIO, err: TextIO) -> int:
    from importer.web import serve

    return serve(
        port=args.port, mappings_dir=args.mappings, bind=args.bind, sandbox=args.sandbox, environ=env, out=out
    )


def _print_summary(
    result: ImportResult,
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
        f"{input_path}: {result.rows_total:,} rows",
        f"  posted    {result.rows_posted:>7,}",
        *_skipped_lines(result),
        f"  failed    {result.rows_failed:>7,}  (validation {by_stage.get('validation', 0)}, "
        f"rejected by LeadSquared {by_stage.get('api', 0)})",
        f"  unknown   {result.rows_unknown:>7,}  (sent, outcome unknown and the look-up failed: the next run "
        "looks them up before sending them again)"
        if result.rows_unknown
        else None,
        f"  not sent  {result.rows_not_sent:>7,}" if result.rows_not_sent else None,
        f"Calls: {result.calls} (throttled {result.throttled}, retries {result.retries}) in {result.elapsed_s:.1f} s",
        f"Error workbook: {result.error_report}"
        if result.error_report
        else f"Error workbook NOT written: {result.report_problem}"
        if result.report_problem
        else "No errors: no error workbook written.",
    ]
    if getattr(result, "ledger_problem", None):
        lines.append(f"Ledger: {result.ledger_problem}")
    elif getattr(result, "ledger", None) is None and result.rows_posted:
        lines.append("No ledger was kept (--no-journal): running this file again may post these rows again.")
    print("\n".join(line for line in lines if line is not None), file=out)


def _next_steps(result: ImportResult, mapping: Path) -> list[str]:
    """What to do about the rows that did not arrive, in the closing lines of a run."""
    steps = []
    workbook = result.error_report
    kept = result.ledger is not None
    if result.rows_not_sent:
        again = (
            "run the same command again (rows already posted are skipped)"
            if kept
            else f"run {workbook} as the input (without a ledger, the same command would post the rest again)"
        )
        steps.append(f"{_rows(result.rows_not_sent)} not sent: {again}")
    if result.rows_unknown:
        steps.append(
            f"{_rows(result.rows_unknown)} of unknown outcome: run the same command again; it looks them up "
            "first and sends only those not in LeadSquared"
        )
    if result.rows_failed and workbook is not None:
        steps.append(
            f"{_rows(result.rows_failed)} failed: fix {'it' if result.rows_failed == 1 else 'them'} in "
            f"{workbook} and run it as the input: "
            f"lsq-import run {_quoted(workbook)} --mapping {_quoted(mapping)}"
        )
    return steps


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))


def _skipped_lines(result: Any) -> list[str]:
    """How many rows were already in LeadSquared, and from which earlier files and dates."""
    if not result.rows_skipped:
        return []
    lines = [
        f"  skipped   {result.rows_skipped:>7}  (already in LeadSquared, so not sent again; --resend overrides)"
    ]
    for source in getattr(result, "skipped_from", [])[:10]:
        when = f" on {source['posted_on']}" if source["posted_on"] else ""
        lines.append(f"            {source['rows']:>7}  from {source['file']}{when}")
    return lines
