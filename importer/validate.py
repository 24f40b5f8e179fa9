"""Turn each sheet row into an activity body, or into row errors naming the column and value.

Work is done column by column, once per distinct value: pandas numbers a column's distinct cells
in C, each is converted once (date-times of a whole column at once, see `importer.datetimes`),
and numpy spreads the results back over the rows. Only building each row's body is per-row work.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from importer import datetimes
from importer.errors import MappingError
from importer.gcpause import gc_paused
from importer.lookup import lookup_converter
from importer.mapping import (
    DateTimeSource,
    EventSource,
    FieldSource,
    FieldType,
    Mapping,
    NoteSource,
    render_template,
    template_placeholders,
)
from importer.planner import MAX_BATCH, plan_batches
from importer.records import ActivityBody, FieldValue, PlannedRow, RowError, Sheet, Stage

Converter = Callable[[str], "str | None"]
# Many distinct cells at once to their values, None where the one-by-one Converter must decide.
BulkConverter = Callable[[list[str]], "list[str | None]"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_GROUPED_NUMBER = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
# Excel shows long numeric IDs like 123456789012345678 as 1.23457E+17 and saves that text.
_EXCEL_MANGLED = re.compile(r"^\d(\.\d+)?[eE]\+\d+$")
# A date Excel saved as its serial number: 20000 to 80000 is 1954-10-03 to 2119-01-10.
_EXCEL_SERIAL = re.compile(r"^\d{5}(\.\d+)?$")
_SERIAL_RANGE = (20000, 80000)
_EXCEL_EPOCH = datetime(1899, 12, 30)
_MIN_YEAR = 1900
_MAX_DIGITS = 30  # before or after the decimal point
# A number already as `_number` writes it (ASCII digits: \d takes any script's), within _MAX_DIGITS:
# no trailing zeros after the point, so "12.50" and Excel's 12.5 are one value and one row identity.
_PLAIN_DECIMAL = re.compile(rf"-?(0|[1-9][0-9]{{0,{_MAX_DIGITS}}})(\.[0-9]{{0,{_MAX_DIGITS - 1}}}[1-9])?\Z")
# Zero-width characters that text copied from web pages and PDFs carries around values.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}
_WIRE_FORMAT = "%Y-%m-%d %H:%M:%S"
# The ActivityEvent of rows whose mapping names the event: importer.runner.preflight resolves it online.
UNRESOLVED_EVENT = 0


class Validated:
    """Rows ready to send, and the row errors of the rest (several per row are possible).

    `validate_sheet` leaves the rows as columns until someone asks for `rows`: `validate` needs
    only their number and its calls (`row_count`, `call_count`), and building a million bodies
    (and freeing them) was more than half of its time.
    """

    def __init__(
        self,
        rows: list[PlannedRow] | None = None,
        errors: list[RowError] | None = None,
        *,
        build: Callable[[], list[PlannedRow]] | None = None,
        opportunity_codes: np.ndarray | None = None,
        warnings: list[str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self._rows = rows if rows is not None or build is not None else []
        self.errors = errors if errors is not None else []
        self._build = build
        self._opportunity_codes = opportunity_codes  # of the rows kept, while not built
        self.warnings = warnings if warnings is not None else []  # about whole columns, for the log
        # how messages name each column's field: 'PAN (mx_Custom_1)', the display name once known online
        self.labels = labels if labels is not None else {}

    @property
    def rows(self) -> list[PlannedRow]:
        if self._rows is None:
            assert self._build is not None
            self._rows, self._build, self._opportunity_codes = self._build(), None, None
        return self._rows

    @rows.setter
    def rows(self, rows: list[PlannedRow]) -> None:
        self._rows, self._build, self._opportunity_codes = rows, None, None

    @property
    def row_count(self) -> int:
        if self._rows is None and self._opportunity_codes is not None:
            return len(self._opportunity_codes)
        return len(self.rows)

    def call_count(self, batch_size: int = MAX_BATCH) -> int:
        """The calls `plan_batches` makes of the rows: per opportunity, its rows over `batch_size`."""
        if self._rows is None and self._opportunity_codes is not None:
            per_opportunity = np.bincount(self._opportunity_codes)
            return int((-(-per_opportunity // batch_size)).sum())
        return len(plan_batches(self.rows, batch_size))

    @property
    def failed_rows(self) -> set[int]:
        return {error.source_row for error in self.errors}


class _Column:
    """One converted target: row i's value is `distinct[codes[i]]` (None: not sent); errors by row.

    Keeping the distinct values lets later per-value work (a field entry, an event code) stay
    per value too.
    """

    def __init__(
        self,
        distinct: list[object],
        codes: np.ndarray,
        errors: dict[int, str] | None = None,
        *,
        unique: bool = False,
    ) -> None:
        self.distinct = np.empty(len(distinct), dtype=object)
        self.distinct[:] = distinct
        self.codes = codes
        self.errors = errors or {}
        self.unique = unique  # known to hold no value twice (None aside)

    @classmethod
    def constant(cls, value: str | None, size: int) -> _Column:
        return cls([value], np.zeros(size, dtype=np.intp))

    def values(self, rows: np.ndarray) -> list[str | None]:
        return self.distinct[self.codes[rows]].tolist()  # type: ignore[no-any-return]

    def per_value(self, distinct: list[object], rows: np.ndarray) -> list[object]:
        """For each of `rows`, the item of `distinct` (one per distinct value) standing for its value."""
        return _Column(distinct, self.codes).values(rows)  # type: ignore[return-value]


def validate_sheet(sheet: Sheet, mapping: Mapping, mapping_path: str | Path = "mapping") -> Validated:
    """Check and convert every row; never raises for a bad row, only for a bad mapping value.

    A date column whose values fit the other day/month order far better than the mapping's
    format raises MappingError, before any row is sent.
    """
    warnings = [
        warning
        for key, source in mapping.targets()
        if (warning := _check_day_month_order(sheet, key, source, mapping_path)) is not None
    ]
    targets: dict[str, tuple[str | None, _Column]] = {}
    for key, source in mapping.targets():
        column_name = mapping.column_for(key)
        if isinstance(source, NoteSource) and source.template is not None:
            converted = _template_column(sheet, source.template)
        elif isinstance(source, EventSource) and source.name is not None:
            converted = _Column.constant(str(UNRESOLVED_EVENT), len(sheet))
        else:
            convert = _converter(key, source)
            converted = _convert(sheet, key, source, convert, mapping_path)
        targets[key] = (column_name, converted)
    validated = _assemble(sheet, mapping, targets, _unknown_cell_errors(sheet, mapping))
    validated.warnings = warnings
    validated.labels = field_labels(mapping)
    return validated


def field_labels(mapping: Mapping, display_names: dict[str, str] | None = None) -> dict[str, str]:
    """How messages name each column's field: its display name (else the column), the schema name in brackets.

    Columns that feed no custom field are named by themselves (`Owner Email`).
    """
    labels: dict[str, str] = {}
    for key, source in mapping.targets():
        columns = source.columns()
        if len(columns) != 1 or columns[0] in labels:
            continue
        schema_name = key.removeprefix("fields.") if key.startswith("fields.") else None
        name = (display_names or {}).get(schema_name or "") or columns[0]
        labels[columns[0]] = f"{name} ({schema_name})" if schema_name else name
    return labels


def _check_day_month_order(sheet: Sheet, key: str, source: object, mapping_path: str | Path) -> str | None:
    """MappingError when a date column is written in the other day/month order; a warning when unsure."""
    dated = isinstance(source, DateTimeSource) or (
        isinstance(source, FieldSource) and source.type in ("date", "datetime")
    )
    form = getattr(source, "format", None)
    column = source.column if isinstance(source, DateTimeSource | FieldSource) else None
    if not dated or form is None or column is None or not len(sheet):
        return None
    check = datetimes.check_order(sheet.frame[column.strip()].to_numpy(dtype=object), form)
    if check is None:
        return None
    where = f"'{key}' (column '{column.strip()}')"
    if check.wrong_order:
        raise MappingError(mapping_path, _wrong_order_message(where, check))
    if check.undecided:
        return (
            f"{mapping_path}: {where}: every date reads both as {check.given} and as {check.other}"
            f"{_both_example(check)}; they are read as {check.given}, as the mapping says: check that "
            "this is the sheet's order"
        )
    return None


def _wrong_order_message(where: str, check: datetimes.OrderCheck) -> str:
    assert check.example_other is not None
    text, moment = check.example_other
    none_given = "none" if not check.only_given else f"only {check.only_given:,}"
    both = f", and {check.both:,} read both ways{_both_example(check)}" if check.both else ""
    sampled = f" (of {check.sampled:,} rows read, spread over the column)" if check.sampled else ""
    return (
        f"{where}: the dates are written {check.other}, not {check.given} as the mapping says{sampled}: "
        f"{check.only_other:,} rows read only as {check.other} ('{text}' is "
        f"{datetimes.spoken_date(moment)}), {none_given} only as {check.given}{both}. Nothing was "
        f'sent: if the sheet is {check.other}, set format: "{check.other}"'
    )


def _both_example(check: datetimes.OrderCheck) -> str:
    if check.example_both is None:
        return ""
    text, given, other = check.example_both
    return (
        f" ('{text}' is {datetimes.spoken_date(given)} as {check.given}, "
        f"{datetimes.spoken_date(other)} as {check.other})"
    )


def _converter(key: str, source: object) -> Converter:
    if key == "opportunity_id":
        lookup = source.lookup  # type: ignore[attr-defined]
        return _opportunity_id if lookup is None else lookup_converter(lookup)
    if key == "owner_email":
        return _email
    if key == "activity_event":
        return _event_code
    if key == "note":
        return _text
    if key == "activity_datetime":
        assert isinstance(source, DateTimeSource)
        form, zone = source.format, source.timezone
        return lambda text: _datetime(text, form, zone)
    assert isinstance(source, FieldSource)
    return converter_for(source.type, source.format, source.timezone)


def converter_for(field_type: FieldType, form: str | None = None, zone: str | None = None) -> Converter:
    """Trimmed text to the wire value of a field type, raising ValueError; ISO dates are always read.

    `form` is the mapping's date format, a human form (DD/MM/YYYY) or a strptime one.
    """
    if field_type == "number":
        return _number
    if field_type == "date":
        return lambda text: _date(text, form)
    if field_type == "datetime":
        return lambda text: _datetime(text, form, zone)
    if field_type == "boolean":
        return _boolean
    return _field_text


_REQUIRED = {"opportunity_id", "owner_email", "activity_event"}
_BULK_FROM = 200  # distinct cells below which a whole-column path costs more than it saves


def _convert(sheet: Sheet, key: str, source: object, convert: Converter, mapping_path: str | Path) -> _Column:
    required = key in _REQUIRED or (isinstance(source, FieldSource) and source.required)
    default = getattr(source, "default", None)
    if not source.columns():  # type: ignore[attr-defined]
        value = _scalar_text(source.value)  # type: ignore[attr-defined]
        try:
            constant = _convert_one(value, convert, required, default)
        except ValueError as exc:
            raise MappingError(mapping_path, f"'{key}.value': {exc}") from None
        return _Column.constant(constant, len(sheet))
    bulk = _bulk_converter(key, source)
    name: str = source.columns()[0]  # type: ignore[attr-defined]
    column = sheet.frame[name]
    # the opportunity's values are numbered again once converted, to group the rows: hashed here,
    # that second numbering is over the distinct cells only
    by_position = bulk is None and convert in _PLAIN and key != "opportunity_id"
    codes, distinct = _numbered(column, by_position=by_position)
    cells = distinct.tolist()
    converted, failures = _convert_distinct(cells, convert, required, default, bulk)
    errors = {}
    if failures:
        failed = np.zeros(len(converted), dtype=bool)
        failed[list(failures)] = True
        errors = {int(index): failures[codes[index]] for index in np.flatnonzero(failed[codes])}
    # distinct cells kept as they are stay distinct values: `_assemble` need not number them again
    # (0.14 s for the bench's 367,177 opportunities); a changed one (' abc' is 'abc') may repeat another
    unique = key == "opportunity_id" and sum(map(operator.is_not, converted, cells)) == len(failures)
    return _Column(converted, codes, errors, unique=unique)  # type: ignore[arg-type]


_DISTINCT_SAMPLE = 4096  # cells drawn from the column to judge how often its values repeat


def _numbered(column: pd.Series, *, by_position: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's number among the column's distinct cells, and those cells.

    pandas hashes the cells in C, from the column's own array (its string array hashed a million
    cells of few values in 0.03 s where an array of objects took 0.08 s). A column whose values
    are on fewer than two rows each (PANs, amounts), when `by_position` (its cells are checked by
    `_plain_cells`), is numbered by row instead: hashing a million PANs took 0.17 s, checking the
    few repeats twice 0.05 s.
    """
    if by_position and len(column) >= 2 * _DISTINCT_SAMPLE:
        cells = column.to_numpy(dtype=object)
        if _rows_per_value(cells) <= 2:
            return np.arange(len(cells)), cells
    codes, distinct = column.array.factorize(use_na_sentinel=False)
    return codes, np.asarray(distinct, dtype=object)


def _rows_per_value(cells: np.ndarray) -> float:
    """About how many rows hold each distinct value, from a sample: in k cells drawn from n rows
    holding each value m times, about k^2 (m - 1) / 2n pairs repeat."""
    n = len(cells)
    sample = cells[np.random.default_rng(0).choice(n, size=_DISTINCT_SAMPLE, replace=False)].tolist()
    repeats = len(sample) - len(set(sample))
    return 1 + 2 * n * repeats / _DISTINCT_SAMPLE**2


def _convert_distinct(
    cells: list[str], convert: Converter, required: bool, default: object, bulk: BulkConverter | None
) -> tuple[list[str | None], dict[int, str]]:
    """The value of each distinct cell, and the error of each that fails, by position."""

    def attempt(raw: str) -> str | _Failure | None:
        try:
            return _convert_one(raw, convert, required, default)
        except ValueError as exc:
            return _Failure(str(exc))

    plain = _plain_cells(cells, convert) if bulk is None and len(cells) >= _BULK_FROM else None
    if plain is not None:  # a plain cell is its own value: only the others go through `attempt`
        results: list[object] = list(cells)
        others: Iterable[int] = np.flatnonzero(~plain).tolist()
        nearly = _NEARLY_PLAIN.get(convert)
        for index in others:
            value = None if nearly is None else nearly(cells[index])
            results[index] = attempt(cells[index]) if value is None else value
    elif bulk is not None and len(cells) >= _BULK_FROM:
        results = bulk(cells)  # type: ignore[assignment]
        others = [index for index, value in enumerate(results) if value is None]  # undecided
        for index in others:
            results[index] = attempt(cells[index])
    else:
        results = list(map(attempt, cells))  # the tightest loop Python has: millions of cells go through it
        others = range(len(results))
    failures = {index: result.message for index in others if type(result := results[index]) is _Failure}
    for index in failures:
        results[index] = None
    return results, failures  # type: ignore[return-value]


def _plain_cells(cells: list[str], convert: Converter) -> np.ndarray | None:
    """Which cells `_convert_one` would give back unchanged, found without a Python call a cell:
    text already trimmed that is not an Excel-mangled number (one regular expression a cell, run
    from C), or a number already written canonically (numpy on its characters). None for
    converters that change values."""
    check = _PLAIN.get(convert)
    if check is None:
        return None
    try:
        if check is _NUMBER_PLAIN:
            return _plain_numbers(cells)
        if not _mostly_alnum(cells[:_ALNUM_SAMPLE]):
            return np.fromiter(map(bool, map(check.match, cells)), dtype=bool, count=len(cells))
        # letters and digits alone are trimmed text, and no number Excel mangled (that needs a '+'):
        # str.isalnum, a C call a cell, settles a column of IDs or codes at a quarter of the
        # expression's cost (a million PANs: 0.06 s, not 0.21 s); the others take the expression
        plain = np.fromiter(map(str.isalnum, cells), dtype=bool, count=len(cells))
        others = np.flatnonzero(~plain)
        if len(others):
            rest = [cells[index] for index in others.tolist()]
            plain[others] = np.fromiter(map(bool, map(check.match, rest)), dtype=bool, count=len(rest))
    except TypeError:  # a cell that is not text: each goes the usual way
        return None
    return plain


_NUMBER_WIDTH = 24  # characters: longer cells take the expression (a canonical number is rarely longer)
_NUMBER_CHUNK = 1 << 16  # cells at a time: 6 MiB of characters


def _plain_numbers(cells: list[str]) -> np.ndarray:
    """Which cells are numbers as `_number` writes them (what `_NUMBER_PLAIN` matches), from numpy
    arithmetic on their characters: the bench's 768,861 distinct amounts in 0.21 s, where the expression
    took 0.43 s.
    Raises TypeError for a cell that is not text."""
    lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
    plain = np.zeros(len(cells), dtype=bool)
    for start in range(0, len(cells), _NUMBER_CHUNK):
        stop = min(start + _NUMBER_CHUNK, len(cells))
        plain[start:stop] = _canonical(cells[start:stop], lengths[start:stop])
    longer = np.flatnonzero(lengths > _NUMBER_WIDTH).tolist()
    plain[longer] = [bool(_NUMBER_PLAIN.match(cells[index])) for index in longer]
    return plain


def _canonical(cells: list[str], lengths: np.ndarray) -> np.ndarray:
    """`_NUMBER_PLAIN` for cells of at most `_NUMBER_WIDTH` characters (longer ones are cut here and
    decided by the caller): an optional '-', then '0' or digits not starting with 0, then
    optionally '.' and digits not ending with 0; not '-0'."""
    # as wide as the longest cell (two at least: a sign and a digit)
    count, width = len(cells), max(2, int(min(_NUMBER_WIDTH, lengths.max(initial=0))))
    chars = np.array(cells, dtype=f"<U{width}").view(np.uint32).reshape(count, width)
    signed = (chars[:, 0] == ord("-")).astype(np.int64)
    at = np.arange(width)
    body = (at >= signed[:, None]) & (at < lengths[:, None])  # numpy pads with NULs and cuts longer cells
    digit = (chars >= ord("0")) & (chars <= ord("9"))
    dot = chars == ord(".")
    rows = np.arange(count)
    first = chars[rows, signed]
    second = chars[rows, np.minimum(signed + 1, width - 1)]
    last = chars[rows, np.clip(lengths - 1, 0, width - 1)]
    dots = dot.sum(axis=1)
    return (  # type: ignore[no-any-return]
        (~body | digit | dot).all(axis=1)
        & (dots <= 1)
        & (first >= ord("0"))  # a digit first, not '.5' or '-' alone (the body holds digits and dots)
        & ((first != ord("0")) | (lengths == signed + 1) | (second == ord(".")))  # 0, 0.5; not 05
        & ~((dots > 0) & ((last == ord("0")) | (last == ord("."))))  # 1.5; not 1.50 or 1.
        & ~((signed == 1) & (lengths == 2) & (first == ord("0")))  # '-0' is written '0'
    )


def _mostly_alnum(sample: list[str]) -> bool:
    return sum(map(str.isalnum, sample)) >= 0.75 * len(sample)


class _Failure:
    """A cell's conversion error, returned rather than raised inside a tight loop."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _bulk_converter(key: str, source: object) -> BulkConverter | None:
    """A whole-column path for the types whose distinct values grow with the rows: date-times."""
    if isinstance(source, DateTimeSource):
        fmt, zone = source.strptime_format(), source.timezone
        return lambda cells: datetimes.wire_values(cells, fmt, zone, date_only=False)
    if isinstance(source, FieldSource) and source.type in ("date", "datetime"):
        fmt, zone, date_only = source.strptime_format(), source.timezone, source.type == "date"
        return lambda cells: datetimes.wire_values(cells, fmt, zone, date_only=date_only)
    return None


def _convert_one(raw: str, convert: Converter, required: bool, default: object) -> str | None:
    text = raw.strip()
    if text and (text[0] in _INVISIBLE or text[-1] in _INVISIBLE):  # pasted from the web or a PDF
        text = text.strip(_INVISIBLE + " \t\r\n\xa0")
    if not text and default is not None:
        text = _scalar_text(default)
    if not text:
        if required:
            raise ValueError("is empty, but a value is required")
        return None
    return convert(text)


def _template_column(sheet: Sheet, template: str) -> _Column:
    """The rendered template per row, rendered once per distinct combination of its cells."""
    names = list(dict.fromkeys(name.strip() for name in template_placeholders(template)))
    if not names:
        return _Column.constant(render_template(template, {}).strip(), len(sheet))
    codes = np.zeros(len(sheet), dtype=np.int64)
    for name in names:  # number each distinct combination of the cells so far
        column_codes, distinct = pd.factorize(sheet.frame[name].to_numpy(dtype=object), use_na_sentinel=False)
        codes, _ = pd.factorize(codes * len(distinct) + column_codes)
    first_rows = np.unique(codes, return_index=True)[1]
    columns = [sheet.frame[name].to_numpy(dtype=object)[first_rows] for name in names]
    rendered: list[str | None] = []
    for cells in zip(*columns, strict=True):
        stripped = [cell.strip() for cell in cells]
        rendered.append(
            render_template(template, dict(zip(names, stripped, strict=True))).strip()
            if any(stripped)
            else None
        )
    return _Column(rendered, codes)  # type: ignore[arg-type]


def _assemble(
    sheet: Sheet,
    mapping: Mapping,
    targets: dict[str, tuple[str | None, _Column]],
    unknown_cells: list[RowError],
) -> Validated:
    """The errors now; the rows kept, as a builder of their bodies (see `Validated`)."""
    errors: list[RowError] = []
    bad: dict[int, list[RowError]] = {}
    source_rows = sheet.source_rows
    for key, (column_name, converted) in targets.items():
        label = column_name or key
        for index, message in converted.errors.items():
            error = RowError(source_rows[index], Stage.VALIDATION, message, column_name)
            bad.setdefault(index, []).append(error if column_name else _named(error, label))
    for index in sorted(bad):
        errors.extend(bad[index])
    keep = np.ones(len(sheet), dtype=bool)
    keep[list(bad)] = False
    rows_of_sheet = np.asarray(source_rows, dtype=np.int64)
    if unknown_cells:  # a row using a cell whose value is unknown fails, never sent without it
        keep[np.isin(rows_of_sheet, [error.source_row for error in unknown_cells])] = False
        errors = sorted(errors + unknown_cells, key=lambda error: error.source_row)
    kept = np.flatnonzero(keep)
    opportunity = targets["opportunity_id"][1]
    # cells that differ (' abc', 'abc') may be one opportunity: number the converted values
    if opportunity.unique:
        value_codes = np.arange(len(opportunity.distinct))
    else:
        value_codes = pd.factorize(opportunity.distinct, use_na_sentinel=False)[0]
    return Validated(
        errors=errors,
        build=lambda: _build_rows(mapping, targets, rows_of_sheet[kept], kept),
        opportunity_codes=value_codes[opportunity.codes[kept]],
    )


def _build_rows(
    mapping: Mapping,
    targets: dict[str, tuple[str | None, _Column]],
    source_rows: np.ndarray,
    kept: np.ndarray,
) -> list[PlannedRow]:
    """Each kept row's activity body, from the converted columns."""

    def values(key: str) -> list[str | None]:  # of the rows kept
        return targets[key][1].values(kept) if key in targets else [None] * len(kept)

    event = targets["activity_event"][1]
    events = event.per_value([None if text is None else int(text) for text in event.distinct.tolist()], kept)
    fields = [
        _field_entries(name[len("fields.") :], column, kept)
        for name, (_, column) in targets.items()
        if name.startswith("fields.")
    ]
    columns = [
        source_rows.tolist(),
        values("opportunity_id"),
        events,
        values("owner_email"),
        values("note"),
        values("activity_datetime"),
        _field_lists(fields, len(kept)),
    ]
    skip_dropdowns = mapping.skip_dropdown_validation
    rows: list[PlannedRow] = []
    with gc_paused():
        for source_row, opportunity, event, owner, note, when, fields in zip(*columns, strict=True):
            body: ActivityBody = {"ActivityEvent": event, "ActivityOwnerEmail": owner}
            if note is not None:
                body["ActivityNote"] = note
            if when is not None:
                body["ActivityDateTime"] = when
            if fields:
                body["Fields"] = fields
            if skip_dropdowns:
                body["ValidateDropDownOptions"] = True
            rows.append(PlannedRow(source_row, opportunity, body))
    return rows


def _field_entries(schema_name: str, column: _Column, rows: np.ndarray) -> list[object]:
    """The `Fields` entry of each of `rows`: one per distinct value, shared by the rows that have it."""
    with gc_paused():
        entries: list[object] = [
            None if value is None else {"SchemaName": schema_name, "Value": value}
            for value in column.distinct.tolist()
        ]
        return column.per_value(entries, rows)


def _field_lists(columns: list[list[object]], size: int) -> list[list[FieldValue]]:
    """Each row's `Fields`, from the field entries of each column (one entry per distinct value).

    An entry is shared by every row with that value, so it must never be changed in place.
    """
    if not columns:
        return [[]] * size
    with gc_paused():
        return [[entry for entry in row if entry is not None] for row in zip(*columns, strict=True)]


def _unknown_cell_errors(sheet: Sheet, mapping: Mapping) -> list[RowError]:
    """The rows using a cell whose value is unknown (`Sheet.cell_problems`): they fail."""
    used = {column for _key, source in mapping.targets() for column in source.columns()}
    present = set(sheet.source_rows) if sheet.cell_problems else set()
    return [
        RowError(row, Stage.VALIDATION, problem, column)
        for column in sorted(used & sheet.cell_problems.keys())
        for row, problem in sheet.cell_problems[column].items()
        if row in present
    ]


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


def _field_text(text: str) -> str:
    """A text custom field: often an ID, so Excel's scientific notation is caught as for opportunities."""
    if _EXCEL_MANGLED.match(text):
        raise ValueError(
            f"'{text}' looks corrupted by Excel (a long number shown in scientific notation): "
            "its last digits are lost; format the column as Text in Excel and type them again"
        )
    return text


def _email(text: str) -> str:
    if not _EMAIL.match(text):
        raise ValueError(f"not a valid email address: '{text}'{_email_hint(text)}")
    return text.lower()


def _email_hint(text: str) -> str:
    if text.endswith("."):
        return " (it ends with a '.')"
    if text.count("@") != 1:
        return " (an address has exactly one '@')"
    if any(character.isspace() for character in text):
        return " (it contains a space)"
    if ".." in text.partition("@")[2] or text.partition("@")[2].startswith("."):
        return " (the part after '@' has an empty name between dots)"
    return ""


def _event_code(text: str) -> str:
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f"activity event code must be a whole number: '{text}'")
    return str(int(text))


def _number(text: str) -> str:
    if _PLAIN_DECIMAL.match(text) and text != "-0":  # already canonical: most cells of a number column
        return text
    candidate = text.replace(",", "") if _GROUPED_NUMBER.match(text) else text
    if not _NUMBER.match(candidate):
        raise ValueError(f"not a number: '{text}'")
    try:
        number = Decimal(candidate)
    except InvalidOperation:
        raise ValueError(f"not a number: '{text}'") from None
    if number.adjusted() > _MAX_DIGITS or number.as_tuple().exponent < -_MAX_DIGITS:  # type: ignore[operator]
        # written out, '1e999999999' is a billion digits: refuse it before it is
        raise ValueError(
            f"not a number a field can hold: '{text}' has more than {_MAX_DIGITS} digits written out"
        )
    written = format(number, "f") if number else "0"
    return written.rstrip("0").rstrip(".") if "." in written else written


# A number as `_number` writes it but for zeros at the end of its decimals: 1500.00 from a sheet
# of amounts, where every cell would otherwise take the whole road
_TRAILING_ZEROS = re.compile(rf"-?(0|[1-9][0-9]{{0,{_MAX_DIGITS}}})\.[0-9]{{0,{_MAX_DIGITS}}}\Z")


def _zeros_dropped(text: str) -> str | None:
    """'12.50' as '12.5', '-0.00' as '0'; None for any other text."""
    if not _TRAILING_ZEROS.match(text):
        return None
    value = text.rstrip("0").rstrip(".")
    return "0" if value == "-0" else value


def _boolean(text: str) -> str:
    folded = text.casefold()
    if folded in _TRUE:
        return "true"
    if folded in _FALSE:
        return "false"
    raise ValueError(f"not a yes/no value: '{text}' (use true/false, yes/no, 1/0)")


def parse_datetime(text: str, form: str | None) -> datetime:
    """Parse with the mapping's format first, then ISO (how Excel date cells are read), then a serial.

    `form` is the mapping's format as written, human (DD/MM/YYYY) or strptime; messages show it
    the way a person writes it.
    """
    moment = _parse_any(text, form)
    if moment.year < _MIN_YEAR:  # a typo ('0024-03-26') or Excel's day zero; and %Y would not pad it
        raise ValueError(f"the year {moment.year} is not plausible: '{text}'")
    return moment


def _parse_any(text: str, form: str | None) -> datetime:
    if form:
        try:
            return datetime.strptime(text, datetimes.strptime_format(form))
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    if _EXCEL_SERIAL.match(text) and _SERIAL_RANGE[0] <= float(text) < _SERIAL_RANGE[1]:
        # a date cell saved as a number (Excel's "General" format): days since 1899-12-30
        return _round_to_second(_EXCEL_EPOCH + timedelta(days=float(text)))
    if not form:
        raise ValueError(f"not a date in the form YYYY-MM-DD (or YYYY-MM-DD HH:mm:ss): '{text}'")
    raise ValueError(
        f"not a date in the form {datetimes.human_format(form)}: '{text}'{_other_order(text, form)}"
    )


def _other_order(text: str, form: str) -> str:
    """A hint when the text reads with day and month the other way round."""
    other = datetimes.swapped_format(form)
    if other is None:
        return ""
    try:
        moment = datetime.strptime(text, datetimes.strptime_format(other))
    except ValueError:
        return ""
    return f" (as {datetimes.human_format(other)} it would be {datetimes.spoken_date(moment)})"


def _round_to_second(moment: datetime) -> datetime:
    return (moment + timedelta(microseconds=500_000)).replace(microsecond=0)


def _date(text: str, form: str | None) -> str:
    return f"{parse_datetime(text, form).date():%Y-%m-%d} 00:00:00"


def _datetime(text: str, form: str | None, zone: str | None) -> str:
    moment = parse_datetime(text, form)
    if moment.tzinfo is None:
        moment = _localized(moment, text, zone) if zone else moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC).strftime(_WIRE_FORMAT)
    except OverflowError:
        raise ValueError(f"'{text}' is out of range once converted to UTC") from None


def _localized(moment: datetime, text: str, zone: str) -> datetime:
    """The local time in `zone`; a time a DST change skips or repeats there is an error saying so."""
    tz = ZoneInfo(zone)
    earlier, later = moment.replace(tzinfo=tz, fold=0), moment.replace(tzinfo=tz, fold=1)
    if earlier.utcoffset() == later.utcoffset():
        return earlier
    try:
        round_trip = earlier.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    except OverflowError:
        return earlier
    if round_trip != moment:
        raise ValueError(
            f"'{text}' never happened in {zone}: the clocks moved forward over it for daylight saving "
            "time that day; correct the time"
        )
    first, second = (_with_offset(moment, t) for t in (earlier, later))
    raise ValueError(
        f"'{text}' happened twice in {zone}: the clocks went back over it at the end of daylight saving "
        f"time that day; write which one with its UTC offset, '{first}' or '{second}'"
    )


def _with_offset(moment: datetime, local: datetime) -> str:
    offset = local.utcoffset() or timedelta(0)
    sign, minutes = ("+" if offset >= timedelta(0) else "-"), abs(int(offset.total_seconds())) // 60
    return f"{moment:%Y-%m-%d %H:%M:%S}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# text _convert_one keeps as it is: not empty, nothing str.strip() or the invisible characters remove
_TRIMMED_TEXT = rf"[^\s{_INVISIBLE}](?:.*[^\s{_INVISIBLE}])?\Z"
_TRIMMED = re.compile("(?s)" + _TRIMMED_TEXT)
# trimmed text that is not a number Excel wrote in its scientific form (_EXCEL_MANGLED), in one pass
_TRIMMED_UNMANGLED = re.compile(r"(?s)(?!\d(\.\d+)?[eE]\+\d+\Z)" + _TRIMMED_TEXT)
_ALNUM_SAMPLE = 64  # first cells of a column: when most are letters and digits, str.isalnum is tried first
_NUMBER_PLAIN = re.compile(r"(?!-0\Z)" + _PLAIN_DECIMAL.pattern)  # "-0" is written "0"
# cells _convert_one changes in a known way, tried on the cells that are not plain before the whole road
_NEARLY_PLAIN: dict[Converter, Callable[[str], str | None]] = {_number: _zeros_dropped}
_PLAIN: dict[Converter, re.Pattern[str]] = {
    _text: _TRIMMED,
    _field_text: _TRIMMED_UNMANGLED,
    _opportunity_id: _TRIMMED_UNMANGLED,
    _number: _NUMBER_PLAIN,
}
