"""Turn each sheet row into an activity body, or into row errors naming the column and value.

Work is done column by column with a memo of each column's distinct values: a spreadsheet
repeats its owners, dates and dropdown values, so most cells cost one dictionary lookup.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

from importer.errors import MappingError
from importer.mapping import (
    EventSource,
    FieldSource,
    FieldType,
    Mapping,
    NoteSource,
    render_template,
    template_placeholders,
)
from importer.records import ActivityBody, PlannedRow, RowError, Sheet, Stage

Converter = Callable[[str], "str | None"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_GROUPED_NUMBER = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
# Excel shows long numeric IDs like 123456789012345678 as 1.23457E+17 and saves that text.
_EXCEL_MANGLED = re.compile(r"^\d(\.\d+)?[eE]\+\d+$")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}
_WIRE_FORMAT = "%Y-%m-%d %H:%M:%S"
# The ActivityEvent of rows whose mapping names the event: importer.metadata resolves it online.
UNRESOLVED_EVENT = 0


@dataclass
class Validated:
    """Rows ready to send, and the row errors of the rest (several per row are possible)."""

    rows: list[PlannedRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def failed_rows(self) -> set[int]:
        return {error.source_row for error in self.errors}


class _Column:
    """One converted target: a value (or None: not sent) per row, and errors by row index."""

    def __init__(self, size: int) -> None:
        self.values: list[str | None] = [None] * size
        self.errors: dict[int, str] = {}


def validate_sheet(sheet: Sheet, mapping: Mapping, mapping_path: str | Path = "mapping") -> Validated:
    """Check and convert every row; never raises for a bad row, only for a bad mapping value."""
    targets: dict[str, tuple[str | None, _Column]] = {}
    for key, source in mapping.targets():
        column_name = mapping.column_for(key)
        if isinstance(source, NoteSource) and source.template is not None:
            converted = _template_column(sheet, source.template)
        elif isinstance(source, EventSource) and source.name is not None:
            converted = _Column(len(sheet))
            converted.values = [str(UNRESOLVED_EVENT)] * len(sheet)
        else:
            convert = _converter(key, source)
            converted = _convert(sheet, key, source, convert, mapping_path)
        targets[key] = (column_name, converted)
    return _assemble(sheet, mapping, targets)


def _converter(key: str, source: object) -> Converter:
    if key == "opportunity_id":
        return _opportunity_id
    if key == "owner_email":
        return _email
    if key == "activity_event":
        return _event_code
    if key == "note":
        return _text
    if key == "activity_datetime":
        fmt, zone = source.format, source.timezone  # type: ignore[attr-defined]
        return lambda text: _datetime(text, fmt, zone)
    assert isinstance(source, FieldSource)
    return converter_for(source.type, source.format, source.timezone)


def converter_for(field_type: FieldType, fmt: str | None = None, zone: str | None = None) -> Converter:
    """Trimmed text to the wire value of a field type, raising ValueError; ISO dates are always read."""
    if field_type == "number":
        return _number
    if field_type == "date":
        return lambda text: _date(text, fmt)
    if field_type == "datetime":
        return lambda text: _datetime(text, fmt, zone)
    if field_type == "boolean":
        return _boolean
    return _text


_REQUIRED = {"opportunity_id", "owner_email", "activity_event"}


def _convert(
    sheet: Sheet, key: str, source: object, convert: Converter, mapping_path: str | Path
) -> _Column:
    size = len(sheet)
    out = _Column(size)
    required = key in _REQUIRED or (isinstance(source, FieldSource) and source.required)
    default = getattr(source, "default", None)
    if getattr(source, "column", None) is None:
        value = _scalar_text(source.value)  # type: ignore[attr-defined]
        try:
            constant = _convert_one(value, convert, required, default)
        except ValueError as exc:
            raise MappingError(mapping_path, f"'{key}.value': {exc}") from None
        out.values = [constant] * size
        return out
    memo: dict[str, tuple[bool, str | None]] = {}
    raw_cells = sheet.frame[source.column.strip()].tolist()  # type: ignore[attr-defined]
    values = out.values
    for index, raw in enumerate(raw_cells):
        hit = memo.get(raw)
        if hit is None:
            try:
                hit = (True, _convert_one(raw, convert, required, default))
            except ValueError as exc:
                hit = (False, str(exc))
            memo[raw] = hit
        if hit[0]:
            values[index] = hit[1]
        else:
            out.errors[index] = hit[1]  # type: ignore[assignment]
    return out


def _convert_one(raw: str, convert: Converter, required: bool, default: object) -> str | None:
    text = raw.strip()
    if not text and default is not None:
        text = _scalar_text(default)
    if not text:
        if required:
            raise ValueError("is empty, but a value is required")
        return None
    return convert(text)


def _template_column(sheet: Sheet, template: str) -> _Column:
    names = list(dict.fromkeys(name.strip() for name in template_placeholders(template)))
    out = _Column(len(sheet))
    columns = [sheet.frame[name].tolist() for name in names]
    for index, cells in enumerate(zip(*columns, strict=True)):
        stripped = [cell.strip() for cell in cells]
        if any(stripped) or not names:
            out.values[index] = render_template(template, dict(zip(names, stripped, strict=True))).strip()
    return out


def _assemble(
    sheet: Sheet, mapping: Mapping, targets: dict[str, tuple[str | None, _Column]]
) -> Validated:
    result = Validated()
    bad: dict[int, list[RowError]] = {}
    source_rows = sheet.source_rows
    for key, (column_name, converted) in targets.items():
        label = column_name or key
        for index, message in converted.errors.items():
            error = RowError(source_rows[index], Stage.VALIDATION, message, column_name)
            bad.setdefault(index, []).append(error if column_name else _named(error, label))
    for index in sorted(bad):
        result.errors.extend(bad[index])

    def values(key: str) -> list[str | None]:
        return targets[key][1].values if key in targets else [None] * len(sheet)

    opportunity, owner, event = values("opportunity_id"), values("owner_email"), values("activity_event")
    note, when = values("note"), values("activity_datetime")
    field_columns = [(name[len("fields."):], targets[name][1].values) for name in targets if name.startswith("fields.")]
    skip_dropdowns = mapping.skip_dropdown_validation
    for index, source_row in enumerate(source_rows):
        if index in bad:
            continue
        body: ActivityBody = {"ActivityEvent": int(event[index]), "ActivityOwnerEmail": owner[index]}  # type: ignore[arg-type,typeddict-item]
        if note[index] is not None:
            body["ActivityNote"] = note[index]  # type: ignore[typeddict-item]
        if when[index] is not None:
            body["ActivityDateTime"] = when[index]  # type: ignore[typeddict-item]
        fields = [{"SchemaName": name, "Value": col[index]} for name, col in field_columns if col[index] is not None]
        if fields:
            body["Fields"] = fields  # type: ignore[typeddict-item]
        if skip_dropdowns:
            body["ValidateDropDownOptions"] = True
        result.rows.append(PlannedRow(source_row, opportunity[index], body))  # type: ignore[arg-type]
    return result


def _named(error: RowError, label: str) -> RowError:
    return RowError(error.source_row, error.stage, f"{label}: {error.message}", None)


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- converters: each takes trimmed, non-empty text and returns the wire value or raises ValueError


def _text(text: str) -> str:
    return text


def _opportunity_id(text: str) -> str:
    if _EXCEL_MANGLED.match(text):
        raise ValueError(f"'{text}' looks corrupted by Excel (a long number shown in scientific notation)")
    return text


def _email(text: str) -> str:
    if not _EMAIL.match(text):
        raise ValueError(f"not a valid email address: '{text}'")
    return text.lower()


def _event_code(text: str) -> str:
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f"activity event code must be a whole number: '{text}'")
    return str(int(text))


def _number(text: str) -> str:
    candidate = text.replace(",", "") if _GROUPED_NUMBER.match(text) else text
    if not _NUMBER.match(candidate):
        raise ValueError(f"not a number: '{text}'")
    try:
        number = Decimal(candidate)
    except InvalidOperation:
        raise ValueError(f"not a number: '{text}'") from None
    return format(number, "f")


def _boolean(text: str) -> str:
    folded = text.casefold()
    if folded in _TRUE:
        return "true"
    if folded in _FALSE:
        return "false"
    raise ValueError(f"not a yes/no value: '{text}' (use true/false, yes/no, 1/0)")


def parse_datetime(text: str, fmt: str | None) -> datetime:
    """Parse with the mapping's format first, then ISO (how Excel date cells are read)."""
    if fmt:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        expected = f"'{fmt}' or ISO" if fmt else "ISO (YYYY-MM-DD HH:MM:SS)"
        raise ValueError(f"not a date in the format {expected}: '{text}'") from None


def _date(text: str, fmt: str | None) -> str:
    return f"{parse_datetime(text, fmt).date():%Y-%m-%d} 00:00:00"


def _datetime(text: str, fmt: str | None, zone: str | None) -> str:
    moment = parse_datetime(text, fmt)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone) if zone else timezone.utc)
    return moment.astimezone(timezone.utc).strftime(_WIRE_FORMAT)
