"""The mapping file: which spreadsheet column feeds which part of an activity.

A mapping is YAML checked against a typed model, so a typo is one clear message naming the file
and the key, before any row is read or sent.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from importer import datetimes
from importer.errors import MappingError

FieldType = Literal["text", "number", "date", "datetime", "boolean"]
SchemaName = Annotated[str, Field(pattern=r"^mx_Custom_([1-9]|[1-4][0-9]|50)$")]
Scalar = str | int | float | bool

CHOOSE = "CHOOSE A COLUMN"  # init-mapping's column for a target no header looked like
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_MAX_MAPPING_BYTES = 1_000_000  # a mapping is a page of YAML; anything larger is a mistake


class _Source(BaseModel):
    """Where a target's value comes from: one column of the sheet, or a constant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    value: Scalar | None = None

    @model_validator(mode="after")
    def _one_source(self) -> _Source:
        given = [name for name in self._source_keys() if getattr(self, name) is not None]
        if len(given) != 1:
            keys = " or ".join(self._source_keys())
            raise ValueError(f"give exactly one of {keys} (got {len(given) or 'none'})")
        if self.column is not None and not self.column.strip():
            raise ValueError("column must name a header, not be blank")
        return self

    @classmethod
    def _source_keys(cls) -> tuple[str, ...]:
        return ("column", "value")

    def columns(self) -> list[str]:
        """The sheet columns this source reads."""
        return [self.column.strip()] if self.column is not None else []


class EventSource(_Source):
    value: int | None = None
    name: str | None = None  # an activity type's name, resolved to its code online (ActivityTypes.Get)

    @classmethod
    def _source_keys(cls) -> tuple[str, ...]:
        return ("column", "value", "name")

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str | None) -> str | None:
        if name is not None and not name.strip():
            raise ValueError("name must be an activity type's name, not blank")
        return name.strip() if name is not None else None


class TextSource(_Source):
    pass


class LookupSpec(BaseModel):
    """Find the opportunity from a unique lead field's value (importer.lookup does the look-up)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lead_field: Annotated[
        str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    ]  # a schema name: EmailAddress, Mobile
    column: str
    opportunity_type: Annotated[int, Field(gt=0)]  # the opportunity type's code, e.g. 12000
    pick: Literal["newest"] | None = None  # several of the type: take the newest instead of failing the row
    default_country_code: Annotated[str, Field(pattern=r"^\+?[1-9][0-9]{0,3}$")] = "91"

    @field_validator("column")
    @classmethod
    def _column_not_blank(cls, column: str) -> str:
        if not column.strip():
            raise ValueError("must name a header, not be blank")
        return column.strip()

    @field_validator("default_country_code")
    @classmethod
    def _bare_code(cls, code: str) -> str:
        return code.removeprefix("+")


class OpportunitySource(_Source):
    """Opportunity ids from a column (or a constant), or found by a look-up of the lead."""

    lookup: LookupSpec | None = None
    # with ids: check them in bulk first; several types when the sheet mixes them
    opportunity_type: Annotated[int, Field(gt=0)] | list[Annotated[int, Field(gt=0)]] | None = None

    def opportunity_types(self) -> list[int]:
        """The types plain ids are checked against ([]: not checked)."""
        given = self.opportunity_type
        return [] if given is None else [given] if isinstance(given, int) else list(dict.fromkeys(given))

    @classmethod
    def _source_keys(cls) -> tuple[str, ...]:
        return ("column", "value", "lookup")

    @model_validator(mode="after")
    def _type_once(self) -> OpportunitySource:
        if self.lookup is not None and self.opportunity_type is not None:
            raise ValueError("give opportunity_type inside lookup, not beside it")
        return self

    def columns(self) -> list[str]:
        return [self.lookup.column] if self.lookup is not None else super().columns()


class NoteSource(_Source):
    template: str | None = None

    @classmethod
    def _source_keys(cls) -> tuple[str, ...]:
        return ("column", "value", "template")

    def columns(self) -> list[str]:
        if self.template is None:
            return super().columns()
        return [name.strip() for name in template_placeholders(self.template)]


def _check_timezone(name: str | None) -> str | None:
    if name is not None:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {name!r} (use an IANA name like 'Asia/Kolkata')") from None
    return name


def _check_format(fmt: str | None) -> str | None:
    if fmt is not None:
        if not fmt.strip():
            raise ValueError(f"format must be a date form like {datetimes.HUMAN_EXAMPLES}, not blank")
        datetimes.strptime_format(fmt)  # raises ValueError naming the part that is not a date form
    return fmt


class _Dated:
    """A source whose `format` is a human form (DD/MM/YYYY) or a strptime one (%d/%m/%Y)."""

    def strptime_format(self) -> str | None:
        """The format as strptime reads it."""
        form: str | None = getattr(self, "format", None)
        return None if form is None else datetimes.strptime_format(form)

    def shown_format(self) -> str | None:
        """The format as a person reads it in a message: as written, or %d/%m/%Y as DD/MM/YYYY."""
        form: str | None = getattr(self, "format", None)
        return None if form is None else datetimes.human_format(form)


class DateTimeSource(_Source, _Dated):
    format: str | None = None
    timezone: str | None = None

    _tz = field_validator("timezone")(_check_timezone)
    _fmt = field_validator("format")(_check_format)


class FieldSource(_Source, _Dated):
    type: FieldType = "text"
    format: str | None = None
    timezone: str | None = None
    required: StrictBool = False
    default: Scalar | None = None

    _tz = field_validator("timezone")(_check_timezone)
    _fmt = field_validator("format")(_check_format)


class Mapping(BaseModel):
    """A validated mapping file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    activity_event: EventSource
    opportunity_id: OpportunitySource
    owner_email: TextSource
    note: NoteSource | None = None
    activity_datetime: DateTimeSource | None = None
    skip_dropdown_validation: StrictBool = False
    fields: dict[SchemaName, FieldSource] = Field(default_factory=dict)

    def targets(self) -> Iterator[tuple[str, _Source]]:
        """Every (key, source) pair, with custom fields as `fields.<SchemaName>`."""
        for key in ("activity_event", "opportunity_id", "owner_email", "note", "activity_datetime"):
            source = getattr(self, key)
            if source is not None:
                yield key, source
        for schema_name, source in self.fields.items():
            yield f"fields.{schema_name}", source

    def column_for(self, key: str) -> str | None:
        """The single column a target reads, if it reads exactly one."""
        for name, source in self.targets():
            if name == key:
                columns = source.columns()
                return columns[0] if len(columns) == 1 else None
        return None


def template_placeholders(template: str) -> list[str]:
    """Column names named in a note template; `{{` and `}}` are literal braces."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1) is not None]


def render_template(template: str, values: dict[str, str]) -> str:
    """Fill a note template with the row's (already trimmed) values."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return match.group(0)[0] if name is None else values[name.strip()]

    return _PLACEHOLDER.sub(fill, template)


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors and aliases, so an alias bomb is never expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            mark = event.start_mark
            raise yaml.YAMLError(
                f"line {mark.line + 1}, column {mark.column + 1}: YAML aliases (*name) are not "
                "allowed in a mapping file; write the value out"
            )
        return super().compose_node(parent, index)


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping file; any problem is a MappingError naming file and key."""
    path = Path(path)
    data = _read_yaml(path)
    if data is None or data == {}:
        raise MappingError(path, "the mapping is empty; see mappings/example.yaml for every key")
    if not isinstance(data, dict):
        raise MappingError(path, f"expected a YAML mapping of keys, got {type(data).__name__}")
    data = _plain_forms(data, path)
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        raise MappingError(path, _describe(exc)) from None


_SOURCES = ("activity_event", "opportunity_id", "owner_email", "note", "activity_datetime")
_SCHEMA_NAME = re.compile(r"^mx_custom_([1-9]|[1-4][0-9]|50)$", re.IGNORECASE)


def _plain_forms(data: dict[Any, Any], path: Path) -> dict[Any, Any]:
    """The shorthand a person writes, read when it can mean one thing only, else explained.

    `activity_event: 201` can only be the code: it is read as `{value: 201}`. `owner_email:
    "Owner Email"` could be a header or a constant, so the message shows both ways to write it;
    so do keys written the other way round (`PAN: {column: mx_Custom_1}`).
    """
    data = dict(data)
    event = data.get("activity_event")
    if isinstance(event, int) and not isinstance(event, bool):
        data["activity_event"] = {"value": event}
    problems = [_shorthand(key, data[key]) for key in _SOURCES if key in data and _is_scalar(data[key])]
    problems += _swapped_top(data)
    fields = data.get("fields")
    if isinstance(fields, dict):
        problems += [
            _shorthand(f"fields.{name}", value) for name, value in fields.items() if _is_scalar(value)
        ]
        problems += _swapped_fields(fields)
    if problems:
        raise MappingError(path, "; ".join(problems))
    return data


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _shorthand(key: str, value: Scalar | None) -> str:
    if value is None or value == "":
        return f"'{key}' is empty: say where its value comes from, e.g. {key}: {{column: \"Header\"}}"
    shown = json.dumps(value, ensure_ascii=False)
    leaf = key.removeprefix("fields.")
    if key == "activity_event":
        return (
            f"'activity_event: {value}' can be read two ways: write activity_event: {{name: {shown}}} "
            f"for the activity type of that name, or activity_event: {{column: {shown}}} for a column of "
            "event codes"
        )
    return (
        f"'{key}: {value}' can be read two ways: write {leaf}: {{column: {shown}}} if it is a header of "
        f"the sheet, or {leaf}: {{value: {shown}}} for the same value on every row"
    )


def _swapped_top(data: dict[Any, Any]) -> list[str]:
    """`"Owner Email": {column: owner_email}`: a header as the key, the mapping's key as the column."""
    problems = []
    for key, value in data.items():
        column = value.get("column") if isinstance(value, dict) else None
        if key not in Mapping.model_fields and isinstance(column, str) and column.strip() in _SOURCES:
            problems.append(
                f"'{key}: {{column: {column}}}' has its two names swapped: the key is the part of the "
                f"activity, the column the header; write {column.strip()}: {{column: {json.dumps(str(key))}}}"
            )
    return problems


def _swapped_fields(fields: dict[Any, Any]) -> list[str]:
    """`PAN: {column: mx_Custom_1}` under fields: the header as the key, the schema name as the column."""
    problems = []
    for key, value in fields.items():
        column = value.get("column") if isinstance(value, dict) else None
        if (
            not _SCHEMA_NAME.match(str(key))
            and isinstance(column, str)
            and _SCHEMA_NAME.match(column.strip())
        ):
            name = f"mx_Custom_{_SCHEMA_NAME.match(column.strip()).group(1)}"  # type: ignore[union-attr]
            problems.append(
                f"'fields.{key}: {{column: {column}}}' has its two names swapped: the key is the field's "
                f"schema name, the column the header; write {name}: {{column: {json.dumps(str(key))}}}"
            )
    return problems


def _read_yaml(path: Path) -> Any:
    try:
        if path.stat().st_size > _MAX_MAPPING_BYTES:
            raise MappingError(path, "the file is too large to be a mapping")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MappingError(path, "no such mapping file") from None
    except IsADirectoryError:
        raise MappingError(path, "is a folder, not a mapping file") from None
    except UnicodeDecodeError:
        raise MappingError(path, "is not UTF-8 text") from None
    except OSError as exc:
        raise MappingError(path, f"cannot be read ({exc.strerror})") from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = exc.context_mark if exc.context and exc.context_mark is not mark else None
        started = (
            f" ({exc.context} started at line {context.line + 1}, column {context.column + 1})"
            if context
            else ""
        )
        raise MappingError(path, f"{where}invalid YAML: {exc.problem or exc}{started}") from None
    except yaml.YAMLError as exc:
        raise MappingError(path, str(exc)) from None


def _describe(exc: ValidationError) -> str:
    """One readable line per problem, each naming the key as a dotted path."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if not str(part).startswith("function-")]
        if error["type"] == "extra_forbidden":
            key = ".".join(loc)
            lines.append(f"unknown key '{key}'{_suggest_key(loc)}")
        elif error["type"] == "missing":
            lines.append(f"missing key '{'.'.join(loc)}'")
        elif error["type"] == "string_pattern_mismatch" and loc[:1] == ["fields"]:
            lines.append(
                f"'{'.'.join(loc[:2])}': custom activity fields are named mx_Custom_1 to mx_Custom_50"
                + _schema_case(loc[1])
            )
        elif error["type"] == "dict_type" and loc == ["fields"]:
            lines.append(
                "'fields': expected one line per field under it, like  mx_Custom_1: {column: \"PAN\"}, "
                f"not {_kind(error.get('input'))}"
            )
        elif error["type"] in ("model_type", "dict_type", "model_attributes_type"):
            lines.append(
                f"'{'.'.join(loc)}': expected keys in braces, like {{column: \"Header\"}} or "
                f"{{value: 201}}, not {_kind(error.get('input'))}"
            )
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"'{'.'.join(loc)}': {message}" if loc else message)
    return "; ".join(dict.fromkeys(lines))


def _schema_case(name: str) -> str:
    """Did you mean, for a schema name in the wrong case (`mx_custom_1`)."""
    match = _SCHEMA_NAME.match(name)
    return f"; did you mean 'mx_Custom_{match.group(1)}'? (letter case matters)" if match else ""


def _kind(value: object) -> str:
    return "a list" if isinstance(value, list) else f"{type(value).__name__} {value!r}"


_KNOWN_KEYS = {
    "top": list(Mapping.model_fields),
    "fields": list(FieldSource.model_fields),
    "activity_datetime": list(DateTimeSource.model_fields),
    "note": list(NoteSource.model_fields),
    "activity_event": list(EventSource.model_fields),
    "opportunity_id": list(OpportunitySource.model_fields),
    "lookup": list(LookupSpec.model_fields),
}


def _suggest_key(loc: list[str]) -> str:
    if len(loc) == 1:
        known = _KNOWN_KEYS["top"]
    elif loc[0] == "fields":
        known = _KNOWN_KEYS["fields"]
    elif loc[:2] == ["opportunity_id", "lookup"]:
        known = _KNOWN_KEYS["lookup"]
    else:
        known = _KNOWN_KEYS.get(loc[0], ["column", "value"])
    close = difflib.get_close_matches(loc[-1], known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f" ({hint}allowed: {', '.join(known)})"


def check_columns(mapping: Mapping, headers: list[str], mapping_path: str | Path) -> None:
    """Every column the mapping names must be a header of the sheet."""
    present = set(headers)
    problems = []
    for key, source in mapping.targets():
        for column in source.columns():
            if column not in present:
                problems.append(
                    f"'{key}' names column '{column}', which the sheet lacks{_closest(column, headers)}"
                )
    if problems:
        raise MappingError(mapping_path, "; ".join(problems))


def _closest(column: str, headers: list[str]) -> str:
    folded = {h.casefold().replace(" ", ""): h for h in headers}
    exact = folded.get(column.casefold().replace(" ", ""))
    close = [exact] if exact else difflib.get_close_matches(column, headers, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (headers: {', '.join(headers[:12])}{', ...' if len(headers) > 12 else ''})"
