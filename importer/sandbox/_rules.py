"""The rules an activity object must satisfy, as strict as CONTRACT.md allows; values checked by type."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from importer.sandbox._account import Account, ActivityType, FieldSpec, StoredActivity

_OPTION_TYPES = frozenset({"Dropdown", "MultiSelect"})
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_NUMBER_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?")  # [0-9], not \d: \d also matches non-ASCII digits


def utc_now() -> str:
    return datetime.now(UTC).strftime(DATETIME_FORMAT)


def _parses(value: str, fmt: str) -> bool:
    try:
        datetime.strptime(value, fmt)
    except ValueError:
        return False
    return True


def is_datetime(value: str) -> bool:
    # the regex first: strptime alone accepts unpadded parts such as "2024-3-5 1:2:3"
    return _DATETIME_RE.fullmatch(value) is not None and _parses(value, DATETIME_FORMAT)


def _is_date(value: str) -> bool:
    is_day = _DATE_RE.fullmatch(value) is not None and _parses(value, "%Y-%m-%d")
    return is_day or is_datetime(value)


def is_number(value: str) -> bool:
    return _NUMBER_RE.fullmatch(value) is not None


_FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "String": lambda _value: True,
    "Number": is_number,
    "Date": _is_date,
    "DateTime": is_datetime,
    "Boolean": lambda value: value in ("true", "false"),
}


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def show(value: object) -> str:
    """Quote a value for an error message, cut short so a huge value cannot flood it."""
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


@dataclass(frozen=True)
class Rules:
    """The account facts an activity object is checked against."""

    types: dict[int, ActivityType]
    users: frozenset[str]

    @classmethod
    def of(cls, account: Account) -> Rules:
        types = {activity_type.code: activity_type for activity_type in account.activity_types}
        return cls(types, frozenset(user.casefold() for user in account.users))


_ACTIVITY_KEYS = frozenset(
    {
        "ActivityEvent",
        "ActivityOwnerEmail",
        "ActivityNote",
        "ActivityDateTime",
        "ValidateDropDownOptions",
        "Fields",
    }
)
_OPTIONAL_TYPES: dict[str, tuple[type, str]] = {
    "ActivityNote": (str, "a string"),
    "ActivityDateTime": (str, "a string"),
    "ValidateDropDownOptions": (bool, "true or false"),
    "Fields": (list, "a list"),
}


def _keys_error(row: dict[str, Any], _rules: Rules) -> str | None:
    unknown = sorted(key for key in row if key not in _ACTIVITY_KEYS)
    return f"Unknown attribute {show(unknown[0])}" if unknown else None


def _event_error(row: dict[str, Any], rules: Rules) -> str | None:
    if "ActivityEvent" not in row:
        return "ActivityEvent is mandatory"
    event = row["ActivityEvent"]
    if type(event) is not int:  # bool is an int subclass, and "201" is not a code
        return f"ActivityEvent must be an integer code, not {json_type(event)} {show(event)}"
    if event not in rules.types:
        return f"ActivityEvent {event} is not an activity type of this account"
    return None


def _owner_error(row: dict[str, Any], rules: Rules) -> str | None:
    if "ActivityOwnerEmail" not in row:
        return "ActivityOwnerEmail is mandatory"
    owner = row["ActivityOwnerEmail"]
    if not isinstance(owner, str):
        return f"ActivityOwnerEmail must be a string, not {json_type(owner)}"
    if owner.casefold() not in rules.users:
        return f"ActivityOwnerEmail {show(owner)} is not a user of this account"
    return None


def _optional_types_error(row: dict[str, Any], _rules: Rules) -> str | None:
    for key, (kind, wanted) in _OPTIONAL_TYPES.items():
        if key in row and not isinstance(row[key], kind):
            return f"{key} must be {wanted}, not {json_type(row[key])}"
    return None


def _datetime_error(row: dict[str, Any], _rules: Rules) -> str | None:
    value = row.get("ActivityDateTime")
    if value is None or is_datetime(value):
        return None
    return f"Invalid ActivityDateTime {show(value)}: expected UTC 'YYYY-MM-DD HH:MM:SS'"


def _entry_error(item: object, specs: dict[str, FieldSpec], given: dict[str, str], code: int) -> str | None:
    if not isinstance(item, dict) or set(item) != {"SchemaName", "Value"}:
        return 'Each entry of Fields must be {"SchemaName": ..., "Value": ...}'
    name, value = item["SchemaName"], item["Value"]
    if not isinstance(name, str) or name not in specs:
        return f"Field {show(name)} does not exist on activity type {code}"
    if not isinstance(value, str):
        return f"Value of {name} must be a JSON string, not {json_type(value)}"
    if name in given:
        return f"Field {name} is given more than once"
    return None


def _value_ok(spec: FieldSpec, value: str, skip_options: bool) -> bool:
    if spec.data_type == "String":
        return True
    if spec.data_type in _OPTION_TYPES and skip_options:
        return value != ""
    if spec.data_type == "Dropdown":
        return value in spec.options
    if spec.data_type == "MultiSelect":
        return all(part in spec.options for part in value.split(";"))
    return _FORMAT_CHECKS[spec.data_type](value)


def _value_error(spec: FieldSpec, value: str, skip_options: bool) -> str | None:
    if _value_ok(spec, value, skip_options):
        return None
    message = f"Invalid value {show(value)} for {spec.schema_name} ({spec.data_type})"
    if spec.data_type in _OPTION_TYPES:
        separator = ", separated by ';'" if spec.data_type == "MultiSelect" else ""
        message += f": expected one of {', '.join(spec.options)}{separator}"
    return message


def _mandatory_error(activity_type: ActivityType, given: dict[str, str]) -> str | None:
    for spec in activity_type.fields:
        if spec.mandatory and not given.get(spec.schema_name, "").strip():
            return f"Mandatory field {spec.schema_name} ({spec.display_name}) is missing or empty"
    return None


def _fields_error(row: dict[str, Any], activity_type: ActivityType) -> str | None:
    specs = {spec.schema_name: spec for spec in activity_type.fields}
    # despite its name, true *skips* the option check (CONTRACT.md, confirmed wording)
    skip_options = row.get("ValidateDropDownOptions", False)
    given: dict[str, str] = {}
    for item in row.get("Fields", []):
        error = _entry_error(item, specs, given, activity_type.code)
        if error is None:
            error = _value_error(specs[item["SchemaName"]], item["Value"], skip_options)
        if error is not None:
            return error
        given[item["SchemaName"]] = item["Value"]
    return _mandatory_error(activity_type, given)


def activity_error(row: object, rules: Rules) -> str | None:
    """Why LeadSquared would refuse this activity object, or None if it would create it."""
    if not isinstance(row, dict):
        return f"Each activity must be a JSON object, not {json_type(row)}"
    checks = (_keys_error, _event_error, _owner_error, _optional_types_error, _datetime_error)
    for check in checks:
        error = check(row, rules)
        if error is not None:
            return error
    return _fields_error(row, rules.types[row["ActivityEvent"]])


def stored_activity(opportunity_id: str, body: dict[str, Any], now: str) -> StoredActivity:
    return StoredActivity(
        id=str(uuid.uuid4()),
        opportunity_id=opportunity_id,
        event=body.get("ActivityEvent", 0),
        note=body.get("ActivityNote"),
        owner_email=body.get("ActivityOwnerEmail", ""),
        activity_datetime=body.get("ActivityDateTime") or now,
        fields={item["SchemaName"]: item["Value"] for item in body.get("Fields", [])},
        created_on=now,
    )


def copy_activity(activity: StoredActivity) -> StoredActivity:
    return replace(activity, fields=dict(activity.fields))
