"""Dates and date-times of a whole column at once, with the results of parsing them one by one.

A column of activity times has almost as many distinct values as rows, and `datetime.strptime`
plus a time-zone conversion costs about 15 µs a value in Python. pandas parses and converts them
all at once, but reads some text differently (a negative year, a 60th second), so a value is
only taken here when it is exactly the text strftime gives back for the moment parsed: for such
zero-padded text `validate.parse_datetime` reads the same moment. Everything else (single
digits, Unicode digits, local times that a DST change skips or repeats) is left as None for the
one-by-one path, which also words the errors.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

WIRE_FORMAT = "%Y-%m-%d %H:%M:%S"
_DIRECTIVE = re.compile(r"%(.)")
_NUMERIC_DIRECTIVES = frozenset("YmdHMS%")
# Literal characters a format may have around its directives (a space only inside).
_PLAIN_LITERALS = re.compile(r"[0-9A-Za-z/\-:., T]*")
# How ISO text reads (and how the loader writes an Excel date cell): fromisoformat reads these.
_ISO_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
_ISO_CHARACTERS = frozenset("0123456789-: ")


def wire_values(texts: list[str], fmt: str | None, zone: str | None, *, date_only: bool) -> list[str | None]:
    """The wire value of each trimmed text, or None where only the one-by-one path can decide."""
    series = pd.Series(texts, dtype=object)
    moments = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us]")
    for candidate in _formats(fmt):
        todo = moments.isna()
        if not todo.any():
            break
        moments[todo] = _parse_exactly(series[todo], candidate)
    if date_only:
        wire = moments.dt.strftime("%Y-%m-%d 00:00:00")
    else:
        if zone:  # NaT where the local time is skipped or repeated by a DST change
            local = moments.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
            moments = local.dt.tz_convert("UTC").dt.tz_localize(None)
        wire = moments.dt.strftime(WIRE_FORMAT)
    values: list[str | None] = wire.tolist()
    for index in np.flatnonzero(moments.isna().to_numpy()).tolist():  # strftime writes NaT as NaN
        values[index] = None
    return values


def _formats(fmt: str | None) -> list[str]:
    """The formats to try, in the order `parse_datetime` tries them: the mapping's, then ISO."""
    if fmt is None:
        return list(_ISO_FORMATS)
    formats = [fmt] if _is_plain(fmt) else []
    if _rules_out_iso(fmt):  # ISO text can never match fmt, so parse_datetime falls back to ISO
        formats.extend(_ISO_FORMATS)
    return formats


def _is_plain(fmt: str) -> bool:
    """Only zero-paddable numeric directives, and literals that cannot meet whitespace rules."""
    if not set(_DIRECTIVE.findall(fmt)) <= _NUMERIC_DIRECTIVES:
        return False
    literals = _DIRECTIVE.sub("", fmt)
    return fmt == fmt.strip() and _PLAIN_LITERALS.fullmatch(literals) is not None


def _rules_out_iso(fmt: str) -> bool:
    """Whether fmt has a literal character that ISO text never holds (`%d/%m/%Y` has '/')."""
    literals = _DIRECTIVE.sub("", fmt.replace("%%", "/"))
    return any(character not in _ISO_CHARACTERS for character in literals)


def _parse_exactly(texts: pd.Series, fmt: str) -> pd.Series:
    """Moments of the texts that are exactly their own strftime(fmt) rendering; NaT for the rest."""
    layout = _fixed_layout(fmt)
    if layout is not None:
        return pd.Series(_parse_fixed(texts.tolist(), layout), index=texts.index)
    parsed = pd.to_datetime(texts, format=fmt, errors="coerce").astype("datetime64[us]")
    # validate refuses years before 1900; a year short of 9999 cannot overflow when made UTC
    exact = parsed.notna() & parsed.dt.year.between(1900, 9998)
    exact &= parsed.dt.strftime(fmt) == texts
    return parsed.where(exact)


def _fixed_layout(fmt: str) -> list[tuple[str, int]] | None:
    """fmt as (directive or literal, width) when a zero-padded rendering has one fixed width."""
    layout: list[tuple[str, int]] = []
    for match in re.finditer(r"%(.)|([^%])", fmt):
        directive, literal = match.groups()
        if literal is not None or directive == "%":
            layout.append(("", ord(literal or "%")))
        elif directive in _WIDTHS:
            layout.append((directive, _WIDTHS[directive]))
        else:
            return None
    directives = [name for name, _ in layout if name]
    return layout if "Y" in directives and len(directives) == len(set(directives)) else None


_WIDTHS = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _parse_fixed(texts: list[str], layout: list[tuple[str, int]]) -> np.ndarray:
    """What `_parse_exactly` gives, by numpy arithmetic on the characters: for a fixed-width
    rendering, being exactly strftime's text means ASCII digits where the fields are, the literals
    where they are, and each field within its range."""
    width = sum(1 if not name else size for name, size in layout)
    count = len(texts)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=count)
    chars = np.array(texts, dtype=f"<U{width}").view(np.uint32).reshape(count, width)
    exact = lengths == width
    fields: dict[str, Any] = {"m": 1, "d": 1, "H": 0, "M": 0, "S": 0}  # ints, then digit arrays
    at = 0
    for name, size in layout:
        if not name:
            exact &= chars[:, at] == size
            at += 1
            continue
        digits = chars[:, at : at + size].astype(np.int64) - ord("0")
        exact &= ((digits >= 0) & (digits <= 9)).all(axis=1)
        fields[name] = digits @ (10 ** np.arange(size - 1, -1, -1))
        at += size
    year, month, day = fields["Y"], np.asarray(fields["m"]), np.asarray(fields["d"])
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    exact &= (year >= 1900) & (year <= 9998) & month_ok & (day >= 1) & (day <= days)
    exact &= (
        (np.asarray(fields["H"]) <= 23) & (np.asarray(fields["M"]) <= 59) & (np.asarray(fields["S"]) <= 59)
    )
    year, month, day = np.where(exact, year, 1970), np.where(exact, month, 1), np.where(exact, day, 1)
    dates = ((year - 1970) * 12 + month - 1).astype("datetime64[M]").astype("datetime64[D]") + (day - 1)
    seconds = np.asarray(fields["H"]) * 3600 + np.asarray(fields["M"]) * 60 + np.asarray(fields["S"])
    moments = dates.astype("datetime64[us]") + (seconds * 1_000_000).astype("timedelta64[us]")
    moments[~exact] = np.datetime64("NaT")
    return np.asarray(moments)


# --- Formats as people write them ----------------------------------------------------------

# A human form's tokens: runs of one letter, AM/PM, and the literals a date may hold.
_HUMAN_TOKEN = re.compile(r"AM/PM|am/pm|[Yy]+|M+|m+|[Dd]+|H+|h+|[Ss]+|[Aa]|.")
_HUMAN_LITERALS = frozenset(" /-.:,T")
_BY_SIZE: dict[str, dict[int, str]] = {
    "y": {2: "%y", 4: "%Y"},
    "d": {1: "%d", 2: "%d", 3: "%a", 4: "%A"},
    "m": {1: "%m", 2: "%m", 3: "%b", 4: "%B"},
    "h": {1: "%H", 2: "%H"},
    "s": {1: "%S", 2: "%S"},
}
_SHOWN = {
    "d": "DD", "m": "MM", "Y": "YYYY", "y": "YY", "b": "MMM", "B": "MMMM", "H": "HH", "I": "hh",
    "M": "mm", "S": "ss", "p": "AM/PM", "a": "ddd", "A": "dddd", "%": "%",
}  # fmt: skip
HUMAN_EXAMPLES = "DD/MM/YYYY, MM/DD/YYYY, DD-MMM-YYYY or YYYY-MM-DD HH:mm"


@functools.lru_cache(maxsize=256)  # the one-by-one path asks once per cell
def strptime_format(form: str) -> str:
    """A mapping's `format` as strptime reads it: `%d/%m/%Y` stays, `DD/MM/YYYY` is translated.

    Letters follow the spreadsheet conventions: `M` is the month unless it follows the hour or comes
    before the seconds (then it is minutes, as `mm` is), `hh` is a 12-hour clock only beside AM/PM.
    Raises ValueError naming the part that is not a date form.
    """
    if "%" in form:
        return form
    return "".join(directive for _token, directive in _human_tokens(form))


def _human_tokens(form: str) -> list[tuple[str, str]]:
    """Each token of a human form with its strptime directive (a literal stands for itself)."""
    tokens = _HUMAN_TOKEN.findall(form)
    twelve_hour = any(token.casefold() in {"am/pm", "a"} for token in tokens)
    letters = [token for token in tokens if token not in _HUMAN_LITERALS]
    if not letters:
        raise ValueError(f"format {form!r} is not a date form: write it like {HUMAN_EXAMPLES}")
    out: list[tuple[str, str]] = []
    seen = 0
    for token in tokens:
        if token in _HUMAN_LITERALS:
            out.append((token, token))
            continue
        before, after = letters[seen - 1 : seen] if seen else [], letters[seen + 1 : seen + 2]
        out.append((token, _directive(token, form, twelve_hour, before, after)))
        seen += 1
    return out


def _directive(token: str, form: str, twelve_hour: bool, before: list[str], after: list[str]) -> str:
    if token.casefold() in {"am/pm", "a"}:
        return "%p"
    letter, size = token[0], len(token)
    directive = _BY_SIZE.get(letter.casefold(), {}).get(size)
    if directive is None:
        raise ValueError(
            f"format {form!r}: {token!r} is not part of a date form; write it like {HUMAN_EXAMPLES}"
        )
    if directive == "%m":  # minutes after the hour or before the seconds, as in a spreadsheet
        after_hour = bool(before) and before[0][0] in "Hh"
        before_seconds = bool(after) and after[0][0] in "Ss"
        return "%M" if after_hour or before_seconds else "%m"
    if letter == "h" and twelve_hour:
        return "%I"
    return directive


def human_format(form: str) -> str:
    """How a person reads a format: as written when it is a human form, `%d/%m/%Y` as DD/MM/YYYY."""
    if "%" not in form:
        return form
    return re.sub(r"%(.)", lambda match: _SHOWN.get(match.group(1), match.group(0)), form)


def swapped_format(form: str) -> str | None:
    """The format with its numeric day and month swapped, written as it was (None: not both)."""
    if "%" in form:
        if form.count("%d") != 1 or form.count("%m") != 1:
            return None
        return form.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    tokens = _human_tokens(form)
    days = [i for i, (_token, directive) in enumerate(tokens) if directive == "%d"]
    months = [i for i, (_token, directive) in enumerate(tokens) if directive == "%m"]
    if len(days) != 1 or len(months) != 1:
        return None
    texts = [token for token, _directive in tokens]
    texts[days[0]], texts[months[0]] = texts[months[0]], texts[days[0]]
    return "".join(texts)


# --- Day and month in the wrong order ------------------------------------------------------


@dataclass(frozen=True)
class OrderCheck:
    """How a column's dates read in the mapping's day/month order and in the other one, in rows."""

    given: str  # the format as a person wrote it (DD/MM/YYYY)
    other: str  # the same with day and month swapped (MM/DD/YYYY)
    only_given: int  # rows whose date reads only in the given order
    only_other: int  # rows whose date reads only the other way
    both: int  # rows read either way, as two different dates
    sampled: int | None = None  # how many rows were read, when not all were
    example_other: tuple[str, datetime] | None = None  # a value read only the other way
    example_both: tuple[str, datetime, datetime] | None = None  # a value, read as given and the other way

    @property
    def wrong_order(self) -> bool:
        """The other order fits far better: at least 3 rows and nine in ten of the rows that tell."""
        return self.only_other >= 3 and self.only_other > 9 * self.only_given

    @property
    def undecided(self) -> bool:
        """Every date that reads as given reads the other way too, and some as another date."""
        return self.both > 0 and self.only_given == 0 and not self.wrong_order


# rows read both ways at most: a larger column is sampled evenly. A sheet in the other order has
# thousands of its dates read only that way in such a sample (any day after the 12th); 100,000
# cost 0.36 s for a million rows' two date columns, 25,000 cost 0.09 s.
ORDER_SAMPLE = 25_000


def check_order(cells: list[str] | np.ndarray, form: str) -> OrderCheck | None:
    """Read a column's cells in the format's day/month order and in the other one (None: no order).

    A column of more than ORDER_SAMPLE cells is judged on every n-th cell; `sampled` then says how
    many were read.
    """
    other_form = swapped_format(form)
    if other_form is None or strptime_format(form).startswith(("%Y", "%y")):  # year first: ISO order
        return None
    step = max(1, math.ceil(len(cells) / ORDER_SAMPLE))
    values = [cell.strip() for cell in cells[::step]]
    given = _read_all(values, strptime_format(form))
    other = _read_all(values, strptime_format(other_form))
    has_given, has_other = given.notna().to_numpy(), other.notna().to_numpy()
    differ = has_given & has_other & (given != other).to_numpy()
    only_other = has_other & ~has_given
    check = OrderCheck(
        human_format(form),
        human_format(other_form),
        only_given=int((has_given & ~has_other).sum()),
        only_other=int(only_other.sum()),
        both=int(differ.sum()),
        sampled=len(values) if step > 1 else None,
    )
    if only_other.any():
        at = int(only_other.argmax())
        check = replace(check, example_other=(values[at], other[at].to_pydatetime()))
    if differ.any():
        at = int(differ.argmax())
        check = replace(
            check, example_both=(values[at], given[at].to_pydatetime(), other[at].to_pydatetime())
        )
    return check


def _read_all(values: list[str], fmt: str) -> pd.Series:
    """Each value read with fmt, NaT where it does not fit.

    Zero-padded text of a fixed-width format is read by numpy arithmetic (a million values in a
    fraction of a second); only text of another width goes through pandas' strptime.
    """
    texts = pd.Series(values, dtype=object)
    layout = _fixed_layout(fmt)
    if layout is None or not values:
        return pd.Series(pd.to_datetime(texts, format=fmt, errors="coerce"))
    moments = pd.Series(_parse_fixed(values, layout), index=texts.index)
    width = sum(1 if not name else size for name, size in layout)
    other_width = texts.str.len() != width
    if other_width.any():
        parsed = pd.to_datetime(texts[other_width], format=fmt, errors="coerce")
        moments[other_width] = parsed.astype("datetime64[us]")
    return moments


def spoken_date(moment: datetime) -> str:
    """A date as nobody misreads it: 3 April 2024."""
    return f"{moment.day} {moment:%B %Y}"
