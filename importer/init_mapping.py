"""`lsq-import init-mapping`: a commented starter mapping, guessed from a sheet's headers and values.

The guesses are marked in comments for the user to check; the text always loads as a mapping, so
`lsq-import validate` can be run on it straight away.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import yaml

from importer.account import ActivityMeta, FieldMeta
from importer.lookup import normalise_email, normalise_phone
from importer.mapping import CHOOSE, Mapping
from importer.records import Sheet

_MATCH_CUTOFF = 0.8  # header to display-name similarity below which a column is left unmapped
_SAMPLE = 500  # distinct values looked at to guess a date format
# what YAML forbids raw in a stream, and the characters it reads as line breaks (NEL, LS, PS)
_NON_PRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")

_DATE_FORMATS = [
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%d.%m.%Y",
    "%Y/%m/%d",
    "%d-%b-%Y",
    "%d %b %Y",
    "%b %d, %Y",
    "%d/%m/%y",
    "%m/%d/%y",
]
_TIME_FORMATS = [" %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p"]


@dataclass
class Starter:
    """The mapping text, and what the user still has to decide (shown on stderr)."""

    text: str
    notes: list[str] = field(default_factory=list)


def _key(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


# Words people shorten in headers ("Payment Ref No."), read as the word they stand for
_ABBREVIATIONS = {
    "ref": "reference",
    "refno": "reference",
    "no": "number",
    "num": "number",
    "nbr": "number",
    "amt": "amount",
    "qty": "quantity",
    "dt": "date",
    "dob": "birth",
    "tel": "phone",
    "ph": "phone",
    "mob": "mobile",
    "addr": "address",
    "desc": "description",
    "dept": "department",
    "cust": "customer",
    "acct": "account",
    "txn": "transaction",
    "pmt": "payment",
    "pymt": "payment",
}
_FILLER = {"number", "the", "of", "a"}  # "Payment Reference" is "Payment Reference Number"


def _words(text: str) -> set[str]:
    words = {_ABBREVIATIONS.get(word, word) for word in re.findall(r"[0-9a-z]+", text.casefold())}
    return words - _FILLER or words


_STAFF = ("rep", "user", "agent", "executive", "salesperson", "staff", "employee", "assigned", "owner")


# Each target's header guesses, best first: a header is taken by the first rule it meets.
_GUESSES: dict[str, list[Callable[[str], bool]]] = {
    "opportunity_id": [
        lambda k: k in {"opportunityid", "opportunityguid", "prospectopportunityid", "oppid", "opportunity"},
        lambda k: "opportunity" in k and k.endswith("id"),
    ],
    "owner_email": [
        lambda k: "owner" in k and "mail" in k,
        lambda k: "mail" in k and any(who in k for who in _STAFF),
        lambda k: (
            k in {"activityowner", "owner", "useremail", "salesrep", "assignedto", "email", "emailaddress"}
        ),
    ],
    "note": [
        lambda k: (
            k
            in {
                "note",
                "notes",
                "activitynote",
                "activitynotes",
                "remark",
                "remarks",
                "comment",
                "comments",
                "description",
            }
        ),
    ],
    "activity_datetime": [
        lambda k: (
            k in {"activitydate", "activitydatetime", "activitytime", "activitydateandtime", "activityon"}
        ),
        lambda k: "activity" in k and ("date" in k or "time" in k),
        lambda k: k in {"date", "datetime", "when", "timestamp", "createdon"},
        lambda k: any(k.startswith(what) for what in ("visit", "call", "meeting")) and "date" in k,
    ],
}

# A format written in a header, "Visit Date (DD/MM/YYYY)": the strptime format it stands for
_HINT_PARTS = [
    ("YYYY", "%Y"),
    ("MMM", "%b"),
    ("DD", "%d"),
    ("MM", "%m"),
    ("YY", "%y"),
    ("HH", "%H"),
    ("mm", "%M"),
    ("ss", "%S"),
]
_HINT = re.compile(r"(?:YYYY|DD|MM|YY)(?:[-/. ](?:YYYY|MMM|DD|MM|YY))+(?:[ T]HH:mm(?::ss)?)?")


def format_hint(header: str) -> tuple[str, str] | None:
    """(the form a person wrote, its strptime format) when a header names its date format."""
    match = _HINT.search(header.replace("dd", "DD").replace("yyyy", "YYYY").replace("yy", "YY"))
    if match is None:
        return None
    form = fmt = match.group(0)
    for part, directive in _HINT_PARTS:
        fmt = fmt.replace(part, directive)
    return form, fmt


def guess_column(headers: list[str], target: str, taken: set[str]) -> str | None:
    """The first free header meeting the best rule for `target`, or None."""
    for rule in _GUESSES[target]:
        for header in headers:
            if header not in taken and rule(_key(header)):
                return header
    return None


def similarity(header: str, display_name: str) -> float:
    """1 for the same name ignoring case, spaces and punctuation; 0.9 when one's words hold the other's."""
    a, b = _key(header), _key(display_name)
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    words_a, words_b = _words(header), _words(display_name)
    if words_a <= words_b or words_b <= words_a:
        return 0.9
    return difflib.SequenceMatcher(None, a, b).ratio()


def match_fields(headers: list[str], fields: list[FieldMeta]) -> dict[str, str]:
    """Schema name -> header, best pairs first, each header and field used once."""
    pairs = []
    for f_index, meta in enumerate(fields):
        for h_index, header in enumerate(headers):
            score = max(
                similarity(header, meta.display_name), 1.0 if _key(header) == _key(meta.schema_name) else 0
            )
            if score >= _MATCH_CUTOFF:
                pairs.append((-score, f_index, h_index))
    matched: dict[str, str] = {}
    used: set[str] = set()
    for _score, f_index, h_index in sorted(pairs):
        schema_name, header = fields[f_index].schema_name, headers[h_index]
        if schema_name not in matched and header not in used:
            matched[schema_name] = header
            used.add(header)
    return {meta.schema_name: matched[meta.schema_name] for meta in fields if meta.schema_name in matched}


def guess_format(values: list[str], *, with_time: bool) -> tuple[str | None, list[str]]:
    """A strptime format most of the non-ISO values fit (None: ISO or no format fits), and notes."""
    texts = list(dict.fromkeys(value.strip() for value in values if value.strip()))[:_SAMPLE]
    rest = [text for text in texts if not _is_iso(text)]
    if not rest:
        return None, []
    best, best_count = None, 0
    for fmt in _candidates(with_time):
        count = sum(1 for text in rest if _fits(text, fmt))
        if count > best_count:
            best, best_count = fmt, count
    if best is None:
        return None, [f"no date format fits values like '{rest[0]}': add a format to the mapping"]
    notes = []
    swapped = best.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    if "%d" in best and "%m" in best and sum(1 for text in rest if _fits(text, swapped)) == best_count:
        notes.append(f"every value reads as both '{best}' and '{swapped}': check which one the sheet uses")
    misfits = [text for text in rest if not _fits(text, best)]
    if misfits:
        notes.append(
            f"{len(misfits)} value(s) fit no format, e.g. '{misfits[0]}': their rows will fail validation"
        )
    return best, notes


def _candidates(with_time: bool) -> list[str]:
    dated = [fmt + time for fmt in _DATE_FORMATS for time in _TIME_FORMATS]
    return dated + _DATE_FORMATS if with_time else _DATE_FORMATS + dated


def _fits(text: str, fmt: str) -> bool:
    try:
        datetime.strptime(text, fmt)
    except ValueError:
        return False
    return True


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is YAML's, minus what YAML forbids raw)."""
    return _NON_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def _comment(text: str) -> str:
    return _NON_PRINTABLE.sub("?", " ".join(text.split()))


def _list(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


class _Writer:
    """Collects the mapping's lines and the notes for the user."""

    def __init__(self, sheet: Sheet) -> None:
        self.sheet = sheet
        self.lines: list[str] = []
        self.notes: list[str] = []
        self.taken: set[str] = set()
        self.reserved: set[str] = set()  # headers an activity field matches by name: not guessed by values

    def column(self, target: str, what: str) -> str:
        header = guess_column(self.sheet.headers, target, self.taken) or self.by_values(target)
        if header is None:
            self.notes.append(f"no header looks like {what}: replace '{CHOOSE}' in {target}")
            return CHOOSE
        self.taken.add(header)
        return header

    def by_values(self, target: str) -> str | None:
        """A column whose cells look like the target's: owners' emails repeat, dates parse."""
        for header in self.sheet.headers:
            if header in self.taken or header in self.reserved:
                continue
            values = [v.strip() for v in self.values(header) if v.strip()][:_LOOKUP_SAMPLE]
            if not values:
                continue
            if (
                target == "owner_email"
                and _mostly(normalise_email, values)
                and len(set(values)) <= len(values) / 2
            ):
                self.notes.append(f"'{header}' holds emails that repeat (a few people's): taken as the owner")
                return header
            if target == "activity_datetime" and _dates(values):
                self.notes.append(f"'{header}' holds dates: taken as the activity date")
                return header
        return None

    def values(self, header: str) -> list[str]:
        return self.sheet.frame[header].tolist() if header in self.sheet.headers else []

    def dated(self, header: str, *, with_time: bool) -> tuple[str, str]:
        """`, format: "..."` (or nothing) for a date column, and a comment."""
        hint = format_hint(header)
        values = [value.strip() for value in self.values(header) if value.strip()]
        if hint is not None and sum(_fits(v, hint[1]) or _is_iso(v) for v in values) >= 0.8 * len(values):
            return f", format: {_q(hint[1])}", f"format {hint[0]}, as the header says"
        fmt, notes = guess_format(self.values(header), with_time=with_time)
        self.notes.extend(f"'{header}': {note}" for note in notes)
        part = f", format: {_q(fmt)}" if fmt else ""
        comment = "guessed format" if fmt else "ISO dates (as Excel date cells are read)"
        return part, comment


def starter_mapping(sheet: Sheet, event: int | str, activity: ActivityMeta | None = None) -> Starter:
    """A commented mapping for `sheet`; with `activity` (online), custom fields matched by display name."""
    writer = _Writer(sheet)
    if activity is not None:
        writer.reserved = set(match_fields(sheet.headers, list(activity.fields.values())).values())
    lines = writer.lines
    lines += [
        f"# Starter mapping for {_comment(sheet.path.name)}"
        + (f", sheet {_comment(sheet.sheet_name)}" if sheet.sheet_name else "")
        + ", written by lsq-import init-mapping.",
        "# Every column below is a guess from the headers: check each, then try it without sending:",
        f"#   lsq-import validate {_comment(sheet.path.name)} --mapping THIS_FILE --online",
        "",
    ]
    lines.append(_event_line(event, activity))
    lines.append(_opportunity_line(writer))
    lines.append(f"owner_email: {{column: {_q(writer.column('owner_email', 'an owner email'))}}}")
    note = guess_column(sheet.headers, "note", writer.taken)
    if note is not None:
        writer.taken.add(note)
        lines.append(f'note: {{column: {_q(note)}}}  # or {{template: "text with {{Column}} values"}}')
    when = guess_column(sheet.headers, "activity_datetime", writer.taken) or writer.by_values(
        "activity_datetime"
    )
    if when is not None:
        writer.taken.add(when)
        fmt, comment = writer.dated(when, with_time=True)
        lines.append(
            f"activity_datetime: {{column: {_q(when)}{fmt}}}  # {comment}; read as UTC: add "
            'timezone: "Asia/Kolkata" (your zone) if the sheet\'s times are local'
        )
    lines.append("skip_dropdown_validation: false")
    _fields(writer, activity)
    text = "\n".join(lines) + "\n"
    Mapping.model_validate(yaml.safe_load(text))  # a starter that does not load would be a bug here
    return Starter(text, writer.notes)


# --- A look-up when the sheet has the lead's email or phone, not opportunity ids (issue 13)

_LOOKUP_SHARE = 0.8  # of a column's non-empty values that must read as emails (or phones) to propose it
_LOOKUP_SAMPLE = 200


def _opportunity_line(writer: _Writer) -> str:
    """A column of opportunity ids when a header looks like one, else a look-up by email or phone."""
    if guess_column(writer.sheet.headers, "opportunity_id", writer.taken) is None:
        found = guess_lookup(writer.sheet, writer.taken)
        if found is not None:
            header, lead_field = found
            writer.taken.add(header)
            writer.notes.append(
                f"no column of opportunity ids: each row's opportunity is looked up from '{header}' "
                f"({lead_field}); set opportunity_type to your opportunity type's code"
            )
            return (
                f"opportunity_id:  # found from the lead; see README, 'Finding the opportunity from the lead'\n"
                f"  lookup: {{lead_field: {lead_field}, column: {_q(header)}, opportunity_type: 12000}}"
                "  # CHECK opportunity_type: your opportunity type's code; add pick: newest to take the newest"
            )
    return f"opportunity_id: {{column: {_q(writer.column('opportunity_id', 'an opportunity id'))}}}"


def guess_lookup(sheet: Sheet, taken: set[str]) -> tuple[str, str] | None:
    """(header, lead field) of the first free column of emails, else of phone numbers, not an owner's."""
    free = [h for h in sheet.headers if h not in taken and not (set(_STAFF) & _words(h))]
    for lead_field, reads in (("EmailAddress", normalise_email), ("Mobile", normalise_phone)):
        for header in free:
            values = [v.strip() for v in sheet.frame[header].tolist() if v.strip()][:_LOOKUP_SAMPLE]
            if values and sum(_reads(reads, v) for v in values) >= _LOOKUP_SHARE * len(values):
                named_phone = "phone" in _key(header) and "mobile" not in _key(header)
                return header, "Phone" if lead_field == "Mobile" and named_phone else lead_field
    return None


def _dates(values: list[str]) -> bool:
    """Most values are dates: ISO, or of the one format most of them fit."""
    fmt = guess_format(values, with_time=True)[0]
    dated = sum(_is_iso(v) or (fmt is not None and _fits(v, fmt)) for v in values)
    return not all(v.isdigit() for v in values) and dated >= _LOOKUP_SHARE * len(values)


def _mostly(convert: Callable[[str], str], values: list[str]) -> bool:
    return sum(_reads(convert, v) for v in values) >= _LOOKUP_SHARE * len(values)


def _reads(convert: Callable[[str], str], value: str) -> bool:
    try:
        convert(value)
    except ValueError:
        return False
    return True


def _event_line(event: int | str, activity: ActivityMeta | None) -> str:
    if isinstance(event, int):
        comment = f"  # {_comment(activity.display_name)}" if activity else ""
        return f"activity_event: {{value: {event}}}{comment}"
    comment = f"  # code {activity.code}" if activity else "  # looked up in the account online"
    return f"activity_event: {{name: {_q(event)}}}{comment}"


def _fields(writer: _Writer, activity: ActivityMeta | None) -> None:
    free = [header for header in writer.sheet.headers if header not in writer.taken]
    lines = writer.lines
    if activity is None:
        lines.append("fields: {}  # run init-mapping with --online to match columns to the activity's fields")
        if free:
            lines.append(f"# Columns left unmapped: {_comment(_list(free))}")
            lines.append('#   map each as  mx_Custom_N: {column: "Header"}  under fields:')
        writer.notes.append(
            "offline: no custom field mapped; --online matches columns to the activity's fields"
        )
        return
    matched = match_fields(free, list(activity.fields.values()))
    lines.append("fields:" if matched else "fields: {}")
    for schema_name, header in matched.items():
        lines.append(_field_line(writer, activity.fields[schema_name], header))
    unmapped = [header for header in free if header not in matched.values()]
    missing = [
        meta.label for meta in activity.fields.values() if meta.mandatory and meta.schema_name not in matched
    ]
    spare = [
        f"{meta.label}: {meta.data_type}"
        for meta in activity.fields.values()
        if not meta.mandatory and meta.schema_name not in matched
    ]
    if unmapped:
        lines.append(f"# Columns left unmapped: {_comment(_list(unmapped))}")
    if spare:
        lines.append(f"# Fields of {_comment(activity.label)} not mapped: {_comment(', '.join(spare))}")
    if missing:
        lines.append(
            f"# Mandatory fields still missing (map them under fields: before a run): "
            f"{_comment(', '.join(missing))}"
        )
        writer.notes.append(f"mandatory fields still missing: {', '.join(missing)}")


def _field_line(writer: _Writer, meta: FieldMeta, header: str) -> str:
    keys, comment = "", f"{meta.display_name}: {meta.data_type}"
    kind = meta.kind
    if kind in {"number", "boolean"}:
        keys = f", type: {kind}"
    elif kind in {"date", "datetime"}:
        fmt, how = writer.dated(header, with_time=kind == "datetime")
        keys, comment = f", type: {kind}{fmt}", f"{comment}, {how}"
    elif kind in {"dropdown", "multiselect"} and meta.options:
        shown = ", ".join(meta.options[:8]) + (", ..." if len(meta.options) > 8 else "")
        comment += f" ({shown})"
    if meta.mandatory:
        keys += ", required: true"
        comment += ", mandatory"
    return f"  {meta.schema_name}: {{column: {_q(header)}{keys}}}  # {_comment(comment)}"
