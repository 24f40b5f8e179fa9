"""Check a mapping and its rows against the account's activity types, before anything is sent.

A wrong schema name or dropdown value is found here, not after minutes of rate-limited calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from importer.account import MAX_LISTED, AccountMetadata, ActivityMeta, FieldMeta, Kind, describe_types
from importer.errors import MappingError
from importer.init_mapping import match_fields
from importer.mapping import FieldType, Mapping
from importer.records import ActivityBody, RowError, Stage
from importer.validate import Converter, Validated, converter_for, field_labels

log = logging.getLogger(__name__)

MULTI_SELECT_SEPARATOR = ";"  # docs/leadsquared-api.md: an assumption, not documented by LeadSquared


# --- The mapping against the account ---------------------------------------------------------


def mapped_event(mapping: Mapping, account: AccountMetadata, mapping_path: object) -> int | None:
    """The event code of a mapping with one event for all rows (None: it is read from a column)."""
    source = mapping.activity_event
    if source.column is not None:
        return None
    key, event = ("name", source.name) if source.name is not None else ("value", source.value)
    try:
        return account.code_of(event)  # type: ignore[arg-type]
    except ValueError as exc:
        raise MappingError(mapping_path, f"'activity_event.{key}': {exc}") from None


def check_mapping(mapping: Mapping, activities: Iterable[ActivityMeta], mapping_path: object) -> list[str]:
    """Raise MappingError for fields the activity types lack or mandatory fields left out; return warnings."""
    problems: list[str] = []
    warnings: list[str] = []
    for activity in activities:
        for schema_name, source in mapping.fields.items():
            meta = activity.fields.get(schema_name)
            if meta is None:
                problems.append(
                    f"'fields.{schema_name}': {activity.label} has no field {schema_name}"
                    f"{_did_you_mean(activity, mapping, source.columns())}; its fields are {activity.field_list()}"
                )
            elif "type" in source.model_fields_set and not _type_fits(source.type, meta.kind):
                warnings.append(
                    f"'fields.{schema_name}' is declared type {source.type}, but {meta.label} is a "
                    f"{meta.data_type} field of {activity.label}: its values are checked as {meta.kind}"
                )
        missing = [
            meta.label
            for meta in activity.fields.values()
            if meta.mandatory and meta.schema_name not in mapping.fields
        ]
        if missing:
            problems.append(
                f"'fields': {activity.label} requires {', '.join(missing)}, which the mapping leaves out"
            )
    if problems:
        raise MappingError(mapping_path, "; ".join(problems))
    return warnings


def _did_you_mean(activity: ActivityMeta, mapping: Mapping, columns: list[str]) -> str:
    """The unmapped field whose display name matches the column, from the account's metadata."""
    free = [meta for meta in activity.fields.values() if meta.schema_name not in mapping.fields]
    matched = match_fields(columns, free)
    if not matched:
        return ""
    schema_name, column = next(iter(matched.items()))
    meta = activity.fields[schema_name]
    return f" (did you mean {schema_name}, {meta.display_name}, which matches the column '{column}'?)"


def _type_fits(declared: FieldType, kind: Kind) -> bool:
    return declared == kind or (declared == "text" and kind in {"dropdown", "multiselect"})


# --- Rows against the account ----------------------------------------------------------------


def check_rows(
    validated: Validated,
    mapping: Mapping,
    activities: dict[int, ActivityMeta],
    mapping_path: object,
    *,
    known_types: dict[int, str] | None = None,
    event_code: int | None = None,
) -> Validated:
    """Check valid rows against their activity type's fields; failures become `validation` row errors.

    Bodies are corrected in place: a number or date in the wire format, a dropdown value in the
    option's exact spelling, `event_code` for a mapping that names its event. Each field's distinct
    values are checked once, so a large sheet costs about a dictionary lookup per cell.
    """
    checkers = {
        code: _ActivityChecker(activity, mapping, mapping_path) for code, activity in activities.items()
    }
    event_column = mapping.column_for("activity_event")
    display_names = {
        schema_name: meta.display_name
        for activity in activities.values()
        for schema_name, meta in activity.fields.items()
        if meta.display_name
    }
    result = Validated(
        errors=list(validated.errors),
        warnings=validated.warnings,
        labels=field_labels(mapping, display_names),
    )
    for row in validated.rows:
        body = row.body
        if event_code is not None:
            body["ActivityEvent"] = event_code
        checker = checkers.get(body["ActivityEvent"])
        if checker is None:
            message = (
                f"activity event {body['ActivityEvent']} is not an activity type of this account; "
                f"its types: {describe_types(known_types or {})}"
            )
            result.errors.append(RowError(row.source_row, Stage.VALIDATION, message, event_column))
            continue
        problems = checker.check(body)
        if problems:
            result.errors.extend(
                RowError(row.source_row, Stage.VALIDATION, text, column) for column, text in problems
            )
        else:
            result.rows.append(row)
    result.errors.sort(key=lambda error: error.source_row)
    return result


class _ActivityChecker:
    """The checks of one activity type's fields, with a memo of each field's distinct values."""

    def __init__(self, activity: ActivityMeta, mapping: Mapping, mapping_path: object) -> None:
        self._mapping_path = mapping_path
        self._fields: dict[str, tuple[Converter, dict[str, tuple[bool, str]], str | None]] = {}
        for schema_name in mapping.fields:
            meta = activity.fields.get(schema_name)
            check = _value_check(meta, mapping.skip_dropdown_validation) if meta else None
            if check is not None:
                self._fields[schema_name] = (check, {}, mapping.column_for(f"fields.{schema_name}"))
        self._mandatory = [
            (
                meta.schema_name,
                mapping.column_for(f"fields.{meta.schema_name}"),
                f"is empty, but it is mandatory for {activity.label}",
            )
            for meta in activity.fields.values()
            if meta.mandatory
        ]

    def check(self, body: ActivityBody) -> list[tuple[str | None, str]]:
        """(column, message) of each problem; fixes the values that pass."""
        problems: list[tuple[str | None, str]] = []
        fields = body.get("Fields", [])
        for position, item in enumerate(fields):
            entry = self._fields.get(item["SchemaName"])
            if entry is None:
                continue
            check, memo, column = entry
            value = item["Value"]
            hit = memo.get(value)
            if hit is None:
                hit = memo[value] = self._run(check, value, item["SchemaName"], column)
            if hit[0]:
                if hit[1] != value:  # a new entry: validate shares one entry among the rows of a value
                    fields[position] = {"SchemaName": item["SchemaName"], "Value": hit[1]}
            else:
                problems.append((column, hit[1]))
        for schema_name, column, message in self._mandatory:
            if not any(item["SchemaName"] == schema_name for item in fields):
                problems.append((column, message))
        return problems

    def _run(self, check: Converter, value: str, schema_name: str, column: str | None) -> tuple[bool, str]:
        try:
            return True, check(value) or ""
        except ValueError as exc:
            if column is None:  # a constant of the mapping: every row would fail the same way
                raise MappingError(self._mapping_path, f"'fields.{schema_name}.value': {exc}") from None
            return False, str(exc)


def _value_check(meta: FieldMeta, skip_options: bool) -> Converter | None:
    """A wire value to its checked, normalised form (ValueError if the field cannot take it)."""
    kind = meta.kind
    if kind in {"dropdown", "multiselect"}:
        if skip_options or not meta.options:
            return None
        return _options_check(meta, multi=kind == "multiselect")
    if kind == "text":
        return None
    convert = converter_for(kind)  # type: ignore[arg-type]

    def check(value: str) -> str | None:
        try:
            return convert(value)
        except ValueError as exc:
            raise ValueError(
                f"{exc} (it is a {meta.data_type} field in LeadSquared{_format_hint(kind)})"
            ) from None

    return check


def _format_hint(kind: str) -> str:
    """For a date field read without a format: how to give one."""
    if kind not in {"date", "datetime"}:
        return ""
    return f'; in the mapping, give the column type: {kind} and its format, like format: "DD/MM/YYYY"'


def _options_check(meta: FieldMeta, *, multi: bool) -> Converter:
    exact = {_fold_option(option): option for option in meta.options}
    listed = ", ".join(meta.options[:MAX_LISTED])
    if len(meta.options) > MAX_LISTED:
        listed += f", ... ({len(meta.options)} in all)"

    def check(value: str) -> str:
        if not multi:
            option = exact.get(_fold_option(value))
            if option is None:
                raise ValueError(f"'{value}' is not one of its options: {listed}")
            return option
        parts = [part.strip() for part in value.split(MULTI_SELECT_SEPARATOR) if part.strip()]
        wrong = [part for part in parts if _fold_option(part) not in exact]
        if wrong or not parts:
            shown = ", ".join(f"'{part}'" for part in wrong) if wrong else f"'{value}'"
            raise ValueError(
                f"{shown} {'is' if len(wrong) <= 1 else 'are'} not among its options "
                f"(separate several with '{MULTI_SELECT_SEPARATOR}'): {listed}"
            )
        return MULTI_SELECT_SEPARATOR.join(exact[_fold_option(part)] for part in parts)

    return check


def _fold_option(text: str) -> str:
    return " ".join(text.split()).casefold()
