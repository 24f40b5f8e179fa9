"""The web page: upload a sheet, map it, preview it, import it, download the rows that failed.

Every step calls the library the CLI uses (`importer.runner`, `importer.init_mapping`,
`importer.account`, `importer.mapping`); this module only turns forms into those calls and their
results into pages. Keys stay in the server: the page never sees them.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.resources
import importlib.util
import logging
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from jinja2 import Environment, FunctionLoader, select_autoescape
from python_calamine import CalamineWorkbook
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from importer.account import AccountMetadata, ActivityMeta, MetadataSettings, open_account
from importer.atomic import write_atomically
from importer.client import Credentials, LsqClient
from importer.errors import ImporterError
from importer.init_mapping import guess_column, guess_format, guess_lookup, match_fields
from importer.ledger import STATE_DIR_ENV
from importer.loader import load_sheet
from importer.mapping import load_mapping
from importer.records import Sheet
from importer.report import write_error_workbook
from importer.runner import ImportConfig, ImportResult, check_online, prepare
from importer.throttle import RateLimit
from importer.web.running import Runner
from importer.web.store import UPLOAD_SUFFIXES, ImportState, ImportStore

log = logging.getLogger(__name__)

COOKIE = "lsq_web_session"
DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20
_PREVIEW_ROWS = 10
_SHOWN_ERRORS = 500
_MAPPING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,59}$")
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}

DATE_FORMS: list[tuple[str, str]] = [
    ("%d/%m/%Y", "DD/MM/YYYY"),
    ("%m/%d/%Y", "MM/DD/YYYY"),
    ("%d-%m-%Y", "DD-MM-YYYY"),
    ("%m-%d-%Y", "MM-DD-YYYY"),
    ("%d.%m.%Y", "DD.MM.YYYY"),
    ("%Y/%m/%d", "YYYY/MM/DD"),
    ("%d-%b-%Y", "DD-MMM-YYYY (05-Jan-2024)"),
    ("%d %b %Y", "DD MMM YYYY (05 Jan 2024)"),
    ("%b %d, %Y", "MMM DD, YYYY (Jan 05, 2024)"),
    ("%d/%m/%y", "DD/MM/YY"),
    ("%m/%d/%y", "MM/DD/YY"),
]
TIME_FORMS: list[tuple[str, str]] = [
    (" %H:%M", "HH:MM (24-hour)"),
    (" %H:%M:%S", "HH:MM:SS (24-hour)"),
    (" %I:%M %p", "hh:MM AM/PM"),
    (" %I:%M:%S %p", "hh:MM:SS AM/PM"),
]
ISO_FORM = ("", "YYYY-MM-DD (ISO, or real Excel date cells)")
# The unique lead fields a row's opportunity can be found by (README: "Finding the opportunity from the lead")
LEAD_FIELDS: list[tuple[str, str]] = [
    ("EmailAddress", "Email address"),
    ("Mobile", "Mobile number"),
    ("Phone", "Phone number"),
]
TIMEZONES = ["Asia/Kolkata", "UTC", "Asia/Dubai", "Asia/Singapore", "Europe/London", "America/New_York"]


def date_forms(with_time: bool) -> list[tuple[str, str]]:
    """The formats a person picks from, as (strptime format, human form)."""
    if not with_time:
        return [ISO_FORM, *DATE_FORMS]
    combined = [(d + t, f"{dl.split(' (')[0]} {tl}") for d, dl in DATE_FORMS for t, tl in TIME_FORMS]
    return [ISO_FORM, *combined, *DATE_FORMS]


@dataclass
class Settings:
    """What one server start needs; keys live here and nowhere the page can reach."""

    host: str
    credentials: Credentials = field(repr=False)
    mappings_dir: Path
    state_dir: Path
    metadata: MetadataSettings
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(25, 5.0))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    password: str | None = field(default=None, repr=False)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    account_label: str = ""  # shown in the header, e.g. "sandbox"


def _template_source(name: str) -> tuple[str, None, Any]:
    text = importlib.resources.files("importer.web").joinpath("templates", name).read_text(encoding="utf-8")
    return text, None, lambda: True


class WebApp:
    """The routes, the templates, and the server's imports."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ImportStore(settings.state_dir / "web" / "imports")
        self.store.mark_abandoned()
        self.runner = Runner(self.store)
        self._session = secrets.token_urlsafe(32)  # the cookie value: not the token, so a URL never is one
        self._csrf = hmac.new(self._session.encode(), b"csrf", hashlib.sha256).hexdigest()
        self.templates = Environment(
            loader=FunctionLoader(_template_source), autoescape=select_autoescape(default=True)
        )
        self.templates.globals["human_bytes"] = _human_bytes
        self.templates.globals["max_bytes"] = settings.max_upload_bytes
        self.templates.filters["for_people"] = for_people
        settings.mappings_dir.mkdir(parents=True, exist_ok=True)

    # --- plumbing -----------------------------------------------------------------------------

    def starlette(self) -> Starlette:
        routes = [
            Route("/", self.home, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/static/{name}", self.static, methods=["GET"]),
            Route("/imports", self.upload, methods=["POST"]),
            Route("/imports/{id}", self.show, methods=["GET"]),
            Route("/imports/{id}/preview", self.preview, methods=["POST"]),
            Route("/imports/{id}/start", self.start, methods=["POST"]),
            Route("/imports/{id}/cancel", self.cancel, methods=["POST"]),
            Route("/imports/{id}/progress", self.progress, methods=["GET"]),
            Route("/imports/{id}/errors.xlsx", self.download_errors, methods=["GET"]),
        ]
        return Starlette(
            routes=routes,
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self._guard)],
            exception_handlers={_Missing: self._no_such_import, _Refused: self._refused},
        )

    async def _guard(self, request: Request, call_next: Any) -> Response:
        """The access token, exchanged once for a cookie; then every request needs the cookie."""
        token = request.query_params.get("token")
        if token is not None:
            if hmac.compare_digest(token.encode(), self.settings.token.encode()):
                clean = request.url.remove_query_params("token")
                response = RedirectResponse(str(clean.path) + (f"?{clean.query}" if clean.query else ""), 303)
                self._set_cookie(response)
                return response
            return self._denied(
                request, "This link's access token is wrong, or from an earlier start of the server."
            )
        if request.url.path == "/login" or request.url.path.startswith("/static/"):
            return await call_next(request)  # type: ignore[no-any-return]
        if not hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self._session.encode()):
            return self._denied(
                request, "Open the address that `lsq-import serve` printed: it has the access token."
            )
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response  # type: ignore[no-any-return]

    def _set_cookie(self, response: Response) -> None:
        response.set_cookie(COOKIE, self._session, httponly=True, samesite="strict", path="/")

    def _denied(self, request: Request, why: str) -> Response:
        html = self._render(
            "denied.html", request, why=why, password=self.settings.password is not None, status="denied"
        )
        return HTMLResponse(html, status_code=403)

    async def login(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=4)
        given = str(form.get("password", ""))
        if self.settings.password is None or not hmac.compare_digest(
            given.encode(), self.settings.password.encode()
        ):
            return self._denied(request, "That password is not the one this server was started with.")
        response = RedirectResponse("/", 303)
        self._set_cookie(response)
        return response

    async def _checked_form(self, request: Request, *, max_files: int = 0) -> Any:
        form = await request.form(max_files=max_files, max_fields=400)
        if not hmac.compare_digest(str(form.get("csrf", "")).encode(), self._csrf.encode()):
            await form.close()
            raise _Refused(
                "This form is out of date (or came from another site). Reload the page and try again."
            )
        return form

    def _render(self, name: str, request: Request, **context: Any) -> str:
        context.setdefault("account_label", self.settings.account_label)
        context.setdefault("host", _shown_host(self.settings.host))
        return self.templates.get_template(name).render(csrf=self._csrf, request=request, **context)

    def _page(self, name: str, request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self._render(name, request, **context), status_code=status_code)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found", 404)
        data = importlib.resources.files("importer.web").joinpath("static", name).read_bytes()
        return Response(data, media_type=_STATIC[name])

    def _state(self, request: Request) -> ImportState:
        try:
            return self.store.get(request.path_params["id"])
        except KeyError:
            raise _Missing from None

    async def _no_such_import(self, request: Request, _exc: Exception) -> Response:
        """What a handler that raises _Missing answers: the home page, saying so."""
        return await self.home(request, "There is no such import.", 404)

    async def _refused(self, request: Request, exc: Exception) -> Response:
        """What a handler that raises _Refused (a stale or forged form) answers."""
        return await self.home(request, str(exc), 403)

    # --- pages --------------------------------------------------------------------------------

    async def home(self, request: Request, message: str | None = None, status_code: int = 200) -> Response:
        return self._page(
            "home.html",
            request,
            status_code=status_code,
            imports=self.store.all(),
            message=message,
            max_bytes=self.settings.max_upload_bytes,
        )

    async def upload(self, request: Request) -> Response:
        limit = self.settings.max_upload_bytes
        too_large = (
            f"That file is larger than {_human_bytes(limit)}, the most this page takes. Split it into "
            "smaller files, or import it with the lsq-import command."
        )
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit + 256 * 1024:
            return await self.home(request, too_large, 413)
        form = await self._checked_form(request, max_files=1)
        try:
            return await self._store_upload(request, form, too_large)
        finally:
            await form.close()

    async def _store_upload(self, request: Request, form: Any, too_large: str) -> Response:
        limit = self.settings.max_upload_bytes
        upload = form.get("spreadsheet")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await self.home(request, "Choose a spreadsheet (a .csv or Excel file) first.", 400)
        shown = Path(upload.filename.replace("\\", "/")).name[:120] or "spreadsheet"
        suffix = Path(shown).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            kinds = ", ".join(sorted(UPLOAD_SUFFIXES))
            return await self.home(request, f"'{shown}' is not a spreadsheet this page reads ({kinds}).", 400)
        state = self.store.create(shown, suffix)
        path = self.store.upload_path(state)
        size = 0
        with path.open("wb") as out:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    break
                out.write(chunk)
        if size > limit:
            path.unlink()
            self.store.update(state.id, status="failed", message=too_large)
            return await self.home(request, too_large, 413)
        mapping_name = str(form.get("mapping", "")) or None
        if mapping_name and mapping_name in self._saved_mappings():
            self.store.update(state.id, mapping_name=mapping_name)
        return RedirectResponse(f"/imports/{state.id}", 303)

    async def show(self, request: Request) -> Response:
        try:
            state = self._state(request)
        except _Missing:
            return await self.home(request, "There is no such import (it may have been cleaned up).", 404)
        if state.status in {"running", "finished"} or (state.status == "failed" and state.result):
            return self._page("run.html", request, state=state, running=self.runner.is_running(state.id))
        if state.status == "previewed" and request.query_params.get("edit") is None:
            return self._page("preview.html", request, state=state)
        return self._mapping_page(request, state)

    def _mapping_page(
        self,
        request: Request,
        state: ImportState,
        message: str | None = None,
        status_code: int = 200,
        refused: Any = None,
    ) -> Response:
        """The mapping step; after a refused build form (`refused`), with what the person chose."""
        sheet_name = request.query_params.get("sheet") or state.sheet
        try:
            sheet = load_sheet(self.store.upload_path(state), sheet_name)
        except ImporterError as exc:
            return self._page("unreadable.html", request, state=state, message=str(exc), status_code=422)
        sheets = _sheet_names(self.store.upload_path(state))
        account_problem, types, activity = None, {}, None
        try:
            account = self._account()
            types = account.activity_types()
            event = request.query_params.get("event") or str(refused.get("event", "") if refused else "")
            code = (
                int(event) if event and event.isdigit() and int(event) in types else next(iter(types), None)
            )
            activity = account.activity(code) if code is not None else None
        except ImporterError as exc:
            account_problem = str(exc)
        guesses = _guesses(sheet, activity)
        if refused is not None and activity is not None and refused.get("event") == str(activity.code):
            guesses = _as_chosen(refused, activity)
        return self._page(
            "mapping.html",
            request,
            status_code=status_code,
            state=state,
            sheet=sheet,
            sheets=sheets,
            rows=_first_rows(sheet),
            saved=self._saved_mappings(),
            types=types,
            activity=activity,
            guesses=guesses,
            date_forms=date_forms,
            lead_fields=LEAD_FIELDS,
            timezones=TIMEZONES,
            account_problem=account_problem,
            message=message,
        )

    async def preview(self, request: Request) -> Response:
        state = self._state(request)
        form = await self._checked_form(request)
        if self.runner.is_running(state.id) or state.status in {"running", "finished"}:
            return RedirectResponse(f"/imports/{state.id}", 303)
        sheet = str(form.get("sheet", "")) or None
        state = self.store.update(state.id, sheet=sheet)
        try:
            if form.get("use") == "saved":
                name = str(form.get("mapping", ""))
                if name not in self._saved_mappings():
                    raise _Refused("Choose one of the saved mappings.")
            else:
                name = self._save_built_mapping(form)
            preview = self._validate(state, name)
        except (_Refused, ImporterError) as exc:
            self.store.update(state.id, status="uploaded", message=str(exc), preview={})
            built = form if form.get("use") == "built" else None
            return self._mapping_page(request, state, message=str(exc), status_code=422, refused=built)
        self.store.update(state.id, status="previewed", mapping_name=name, preview=preview, message=None)
        return RedirectResponse(f"/imports/{state.id}", 303)

    async def start(self, request: Request) -> Response:
        state = self._state(request)
        await self._checked_form(request)
        if state.status != "previewed" or not state.mapping_name:
            return RedirectResponse(f"/imports/{state.id}", 303)
        config = self._config(state, state.mapping_name)
        self.runner.start(state.id, config, lambda result: self._finished(state.id, result))
        return RedirectResponse(f"/imports/{state.id}", 303)

    async def cancel(self, request: Request) -> Response:
        state = self._state(request)
        await self._checked_form(request)
        self.runner.cancel(state.id)
        return RedirectResponse(f"/imports/{state.id}", 303)

    async def progress(self, request: Request) -> Response:
        try:
            state = self._state(request)
        except _Missing:
            return JSONResponse({"status": "missing"}, 404)
        return JSONResponse(
            {
                "status": state.status,
                "progress": state.progress,
                "cancel_requested": state.cancel_requested,
                "running": self.runner.is_running(state.id),
            }
        )

    async def download_errors(self, request: Request) -> Response:
        state = self._state(request)
        path = self.store.errors_path(state)
        if not path.is_file():
            return await self.home(request, "This import has no error workbook: no row failed.", 404)
        stem = Path(state.file_name).stem
        return FileResponse(path, filename=f"{stem}.errors.xlsx")

    # --- the library calls ----------------------------------------------------------------------

    def _account(self) -> AccountMetadata:
        client = LsqClient(self.settings.host, self.settings.credentials)
        return open_account(client, self.settings.metadata)

    def _saved_mappings(self) -> list[str]:
        return sorted(path.stem for path in self.settings.mappings_dir.glob("*.yaml") if path.is_file())

    def _config(self, state: ImportState, mapping_name: str) -> ImportConfig:
        return ImportConfig(
            input_path=self.store.upload_path(state),
            mapping_path=self.settings.mappings_dir / f"{mapping_name}.yaml",
            host=self.settings.host,
            credentials=self.settings.credentials,
            sheet=state.sheet,
            rate_limit=self.settings.rate_limit,
            errors_path=self.store.errors_path(state),
            metadata=self.settings.metadata,
            online=True,
            # the account's ledger, in the same state folder: exactly once whatever the upload is called
            state_environ={STATE_DIR_ENV: str(self.settings.state_dir)},
        )

    def _save_built_mapping(self, form: Any) -> str:
        name = " ".join(str(form.get("save_as", "")).split())
        if not _MAPPING_NAME.fullmatch(name):
            raise _Refused(
                "Give the mapping a name (letters, digits, spaces, - or _), so it can be used again."
            )
        account = self._account()
        types = account.activity_types()
        event = str(form.get("event", ""))
        if not event.isdigit() or int(event) not in types:
            raise _Refused("Choose the activity type.")
        activity = account.activity(int(event))
        data = _mapping_data(form, types[int(event)], activity)
        path = self.settings.mappings_dir / f"{name}.yaml"
        text = f"# Saved by the lsq-import web page for {activity.label}.\n" + yaml.safe_dump(
            data, sort_keys=False, allow_unicode=True
        )

        def write(file: BinaryIO) -> None:
            file.write(text.encode("utf-8"))

        write_atomically(path, write, "the mapping")
        load_mapping(path)  # what the CLI will read: fails here, not at import time
        return name

    def _validate(self, state: ImportState, mapping_name: str) -> dict[str, Any]:
        """Every row validated offline and against the account; nothing is sent."""
        config = self._config(state, mapping_name)
        prepared = check_online(config, prepare(config))
        errors_path = self.store.errors_path(state)
        errors_path.unlink(missing_ok=True)
        errors = prepared.validated.errors
        if errors:
            write_error_workbook(errors_path, prepared.sheet, errors, labels=prepared.validated.labels)
        account = self._account()
        calls = len(prepared.batches)
        limit = self.settings.rate_limit
        return {
            "rows_total": len(prepared.sheet),
            "rows_valid": len(prepared.validated.rows),
            "rows_failed": len(prepared.validated.failed_rows),
            "calls": calls,
            "lookup_calls": prepared.lookup_calls,
            "looked_up": prepared.mapping.opportunity_id.lookup is not None,
            "seconds": max(0.0, (calls - limit.calls) * limit.seconds / limit.calls),
            "limit": f"{limit.calls} calls per {limit.seconds:g} s",
            "sample": _as_sent(prepared.validated.rows[:_PREVIEW_ROWS], account),
            "errors": [
                {"row": e.source_row, "column": e.column or "", "stage": str(e.stage), "message": e.message}
                for e in sorted(errors, key=lambda e: e.source_row)[:_SHOWN_ERRORS]
            ],
            "errors_total": len(errors),
        }

    def _finished(self, import_id: str, result: ImportResult) -> None:
        summary = result.summary()
        summary.pop("error_report", None)  # a server path: the page links the download instead
        summary["has_errors"] = result.error_report is not None
        summary["interrupted"] = result.interrupted
        summary["errors_total"] = len(result.errors)
        summary["errors"] = [
            {"row": e.source_row, "column": e.column or "", "stage": str(e.stage), "message": e.message}
            for e in sorted(result.errors, key=lambda e: e.source_row)[:_SHOWN_ERRORS]
        ]
        self.store.update(import_id, status="finished", result=summary)


class _Refused(Exception):
    """A form the page will not act on; the message is for the person (a handler's own 422s catch it)."""


class _Missing(Exception):
    """The import in the address does not exist."""


_STRPTIME = {"%d": "DD", "%m": "MM", "%Y": "YYYY", "%y": "YY", "%b": "MMM", "%H": "HH", "%M": "MM",
             "%I": "hh", "%p": "AM/PM", "%S": "SS"}  # fmt: skip
_FORMAT_IN_TEXT = re.compile(r"'([^']*%[a-zA-Z][^']*)'")
_SCHEMA_WITH_NAME = re.compile(r"\bmx_Custom_\d+ \(([^)]+)\)")
_EXCEPTION_PREFIX = re.compile(r"^MX\w*Exception:\s*")
_API_NAMES = {
    "ActivityOwnerEmail": "Owner email",
    "ActivityDateTime": "Activity date",
    "ActivityNote": "Note",
    "ActivityEvent": "Activity type",
    "EmailAddress": "email address",
}
_PICK_IN_YAML = "add 'pick: newest' to the look-up"  # importer.lookup.describe, as the mapping file says it
_PICK_ON_THE_PAGE = "tick 'Take the newest when a lead has several of this type' in the mapping"
_API_NAME = re.compile(r"\b(" + "|".join(_API_NAMES) + r")\b")


def human_format(fmt: str) -> str:
    """'%d/%m/%Y %H:%M' as a person writes it: 'DD/MM/YYYY HH:MM'."""
    return re.sub(r"%[a-zA-Z]", lambda m: _STRPTIME.get(m.group(0), m.group(0)), fmt)


def for_people(message: str) -> str:
    """A library message with strptime codes, schema names and exception names put in words."""
    message = _EXCEPTION_PREFIX.sub("", message)
    message = _SCHEMA_WITH_NAME.sub(lambda m: f"'{m.group(1)}'", message)
    message = _API_NAME.sub(lambda m: _API_NAMES[m.group(1)], message)
    message = message.replace(_PICK_IN_YAML, _PICK_ON_THE_PAGE)
    return _FORMAT_IN_TEXT.sub(lambda m: f"'{human_format(m.group(1))}'", message)


def _human_bytes(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def _shown_host(host: str) -> str:
    return re.sub(r"^https?://", "", host).rstrip("/")


def _sheet_names(path: Path) -> list[str]:
    if path.suffix.lower() in {".csv", ".txt", ".tsv"}:
        return []
    try:
        return list(CalamineWorkbook.from_path(str(path)).sheet_names)
    except Exception:  # load_sheet already read it; a name list is only a convenience
        return []


def _first_rows(sheet: Sheet, n: int = 5) -> list[tuple[int, list[str]]]:
    head = sheet.frame.head(n)
    return [(sheet.source_rows[i], [str(v) for v in head.iloc[i].tolist()]) for i in range(len(head))]


_TARGETS = ("opportunity_id", "owner_email", "note", "activity_datetime")  # the columns init-mapping guesses


def _guesses(sheet: Sheet, activity: ActivityMeta | None) -> dict[str, Any]:
    """init-mapping's guesses for every target, and its notes on date formats."""
    headers, taken = sheet.headers, set[str]()
    guesses: dict[str, Any] = {"notes": {}}
    for target in _TARGETS:
        header = guess_column(headers, target, taken)
        if header:
            taken.add(header)
        guesses[target] = header
        if target == "opportunity_id":
            guesses["lookup"] = _guess_lookup(sheet, taken) if header is None else {}
    guesses["source"] = "lookup" if guesses["lookup"] else "column"
    guesses["formats"] = {}
    if guesses["activity_datetime"]:
        fmt, notes = guess_format(sheet.frame[guesses["activity_datetime"]].tolist(), with_time=True)
        guesses["formats"]["activity_datetime"], guesses["notes"]["activity_datetime"] = fmt or "", notes
    guesses["fields"] = {}
    if activity is not None:
        free = [h for h in headers if h not in taken]
        guesses["fields"] = match_fields(free, list(activity.fields.values()))
        for schema, header in guesses["fields"].items():
            kind = activity.fields[schema].kind
            if kind in {"date", "datetime"}:
                fmt, notes = guess_format(sheet.frame[header].tolist(), with_time=kind == "datetime")
                guesses["formats"][schema], guesses["notes"][schema] = fmt or "", notes
    return guesses


def _as_chosen(form: Any, activity: ActivityMeta) -> dict[str, Any]:
    """A refused build form's choices, in the shape of `_guesses`: the page shows them again as they were."""

    def value(key: str) -> str:
        return str(form.get(key, "")).strip()

    chosen: dict[str, Any] = {target: value(target) for target in _TARGETS}
    chosen["notes"] = {}
    chosen["source"] = "lookup" if value("opportunity_source") == "lookup" else "column"
    chosen["lookup"] = {
        key: value(f"lookup_{key}") for key in ("lead_field", "column", "opportunity_type", "pick")
    }
    chosen["formats"] = {key: value(f"format_{key}") for key in ("activity_datetime", *activity.fields)}
    chosen["fields"] = {schema: value(f"field_{schema}") for schema in activity.fields}
    chosen["timezone"], chosen["save_as"] = value("timezone"), value("save_as")
    return chosen


def _guess_lookup(sheet: Sheet, taken: set[str]) -> dict[str, str]:
    """As init-mapping does: no column of opportunity ids, so a column of emails or phones to look up."""
    found = guess_lookup(sheet, taken)
    if found is None:
        return {}
    header, lead_field = found
    taken.add(header)
    return {"column": header, "lead_field": lead_field}


def _opportunity_source(form: Any) -> dict[str, Any]:
    """`{column: ...}`, or `{lookup: {lead_field, column, opportunity_type[, pick]}}` as the form chose."""

    def value(key: str) -> str:
        return str(form.get(key, "")).strip()

    if value("opportunity_source") != "lookup":
        if not value("opportunity_id"):
            raise _Refused("Choose the column for: Opportunity ID.")
        return {"column": value("opportunity_id")}
    lead_field = value("lookup_lead_field")
    if lead_field not in dict(LEAD_FIELDS):
        raise _Refused("Choose what to look the lead up by: email address, mobile number or phone number.")
    if not value("lookup_column"):
        raise _Refused("Choose the column that holds the lead's email or phone.")
    kind = value("lookup_opportunity_type")
    if not kind.isdigit() or int(kind) == 0:
        raise _Refused(
            "Give the opportunity type's code, a number such as 12000: the look-up finds the lead's "
            "opportunity of that type."
        )
    lookup: dict[str, Any] = {
        "lead_field": lead_field,
        "column": value("lookup_column"),
        "opportunity_type": int(kind),
    }
    if value("lookup_pick") == "newest":
        lookup["pick"] = "newest"
    return {"lookup": lookup}


def _mapping_data(form: Any, type_name: str, activity: ActivityMeta) -> dict[str, Any]:
    """The mapping the form describes, as the YAML the CLI reads."""

    def column(key: str) -> str:
        return str(form.get(key, "")).strip()

    opportunity = _opportunity_source(form)
    if not column("owner_email"):
        raise _Refused("Choose the column for: Owner email.")
    data: dict[str, Any] = {
        "activity_event": {"name": type_name},
        "opportunity_id": opportunity,
        "owner_email": {"column": column("owner_email")},
    }
    if column("note"):
        data["note"] = {"column": column("note")}
    if column("activity_datetime"):
        when: dict[str, Any] = {"column": column("activity_datetime")}
        if column("format_activity_datetime"):
            when["format"] = column("format_activity_datetime")
        if column("timezone"):
            when["timezone"] = column("timezone")
        data["activity_datetime"] = when
    fields: dict[str, Any] = {}
    unmapped = []
    for schema, meta in activity.fields.items():
        header = column(f"field_{schema}")
        if not header:
            if meta.mandatory:
                unmapped.append(meta.display_name or schema)
            continue
        source: dict[str, Any] = {"column": header}
        if meta.kind in {"number", "boolean", "date", "datetime"}:
            source["type"] = meta.kind
        if meta.kind in {"date", "datetime"} and column(f"format_{schema}"):
            source["format"] = column(f"format_{schema}")
        if meta.mandatory:
            source["required"] = True
        fields[schema] = source
    if unmapped:
        raise _Refused(
            f"{activity.display_name} needs these fields: choose a column for {', '.join(unmapped)}."
        )
    data["fields"] = fields
    return data


def _as_sent(rows: list[Any], account: AccountMetadata) -> dict[str, Any]:
    """The first rows as they will be sent, custom fields under their display names."""
    names: dict[str, str] = {}
    for code in {row.body.get("ActivityEvent") for row in rows}:
        if isinstance(code, int):
            with_fields = account.activity(code).fields
            names.update({schema: meta.display_name or schema for schema, meta in with_fields.items()})
    columns = ["Row", "Opportunity", "Owner", "When (sent as UTC)", "Note"]
    extra: list[str] = []
    shown = []
    for row in rows:
        values = {f["SchemaName"]: f["Value"] for f in row.body.get("Fields", [])}
        for schema in values:
            if names.get(schema, schema) not in extra:
                extra.append(names.get(schema, schema))
        shown.append((row, {names.get(k, k): v for k, v in values.items()}))
    table = [
        [
            str(row.source_row),
            row.opportunity_id,
            row.body.get("ActivityOwnerEmail", ""),
            row.body.get("ActivityDateTime", ""),
            row.body.get("ActivityNote", ""),
            *[values.get(name, "") for name in extra],
        ]
        for row, values in shown
    ]
    return {"columns": columns + extra, "rows": table}
