"""The plain-cell road of validation: cells already in their wire form are kept without a Python
call each. It must decide exactly what the cell-by-cell road decides, for any text at all."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from importer import validate
from importer.validate import _convert_distinct, _field_text, _number, _opportunity_id, _text

# the characters that make a cell not plain, around ordinary ones
_TRICKY = st.sampled_from(
    [
        " ",
        "\t",
        "\n",
        "\xa0",
        "\u2028",
        "\u200b",
        "\ufeff",
        "\x1c",
        "\x85",
        "\u3000",
        "-",
        ".",
        "0",
        "1",
        "9",
        "E",
        "e",
        "+",
        ",",
        "a",
        "é",
    ]
)
_CELL = st.one_of(
    st.text(_TRICKY, max_size=8),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.sampled_from(["-0", "0", "0.50", "1.23457E+17", "12,345.60", "007", " x ", "1e5", ""]),
    st.sampled_from(["1.2.3", "1..2", "-", "-.5", ".5", "5.", "-5.", "0.", "00", "-00", "0\x00", "١٢"]),
    st.from_regex(r"-?[0-9]{1,3}\.?[0-9]{0,3}", fullmatch=True),  # decimals, zeros at either end
    st.from_regex(r"[1-9][0-9]{28,31}\.[0-9]{0,2}0|0\.[0-9]{28,31}0?", fullmatch=True),  # at the digit limits
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_CELL, min_size=1, max_size=40, unique=True),
    st.sampled_from([_text, _field_text, _opportunity_id, _number]),
    st.booleans(),
    st.sampled_from([None, "n/a"]),
    st.sampled_from([0, validate._ALNUM_SAMPLE]),
)
def test_plain_cells_are_converted_as_cell_by_cell(cells, convert, required, default, alnum_sample):
    """Both ways of finding plain text: str.isalnum first (0: always tried), or the expression alone."""
    column = cells * (validate._BULK_FROM // len(cells) + 1)  # past _BULK_FROM: the plain road is taken
    sample, validate._ALNUM_SAMPLE = validate._ALNUM_SAMPLE, alnum_sample
    try:
        plain = _convert_distinct(column, convert, required, default, None)
    finally:
        validate._ALNUM_SAMPLE = sample
    original, validate._BULK_FROM = validate._BULK_FROM, 10**9
    try:
        by_cell = _convert_distinct(column, convert, required, default, None)
    finally:
        validate._BULK_FROM = original

    assert plain == by_cell
    assert validate._plain_cells(column, convert) is not None


def test_a_column_of_plain_numbers_keeps_them_and_still_fails_the_rest():
    cells = [str(n) for n in range(300)] + ["-0", "1,000", " 7", "x"]
    values, failures = _convert_distinct(cells, _number, False, None, None)

    assert values[:300] == cells[:300]
    assert values[300:303] == ["0", "1000", "7"]
    assert failures == {303: "not a number: 'x'"}


def test_numbers_already_canonical_are_plain_and_no_others():
    """What the characters' arithmetic keeps, the few it must not, and cells past its width."""
    plain = ["0", "7", "-7", "10", "0.5", "-0.5", "1500.25", "12345678901234567890123", "9" * 24, "1" * 31]
    other = ["-0", "05", "1.50", "1.", ".5", "-", "1.2.3", "+1", "1e5", " 1", "", "1" * 32, "1" * 25 + ".0"]
    cells = (plain + other) * 20  # as many cells as a column past _BULK_FROM

    assert validate._plain_numbers(cells).tolist() == ([True] * len(plain) + [False] * len(other)) * 20
