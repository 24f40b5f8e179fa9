"""How GetActivitiesOfOpportunity writes an activity: every item shape CONTRACT.md lists."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from importer.sandbox._account import ActivityType, StoredActivity
from importer.sandbox._rules import DATETIME_FORMAT, is_number

IdKey = Literal["ProspectActivityId", "Id", "ActivityId"]
EventKey = Literal["ActivityEvent", "EventCode"]
NoteKey = Literal["ActivityNote", "ActivityEvent_Note"]
TimeKey = Literal["ActivityDateTime", "CreatedOn"]
TimeForm = Literal["plain", "millis", "us", "epoch"]
OwnerKey = Literal["ActivityOwnerEmail", "OwnerEmailAddress", "CreatedByEmailAddress"]
FieldsForm = Literal["Fields", "Data", "ActivityFields", "flat"]


@dataclass(frozen=True)
class ItemShape:
    """One way of writing an activity item; each attribute is one of CONTRACT.md's alternatives.

    time_form: "plain" 2024-03-26 14:15:00, "millis" 2025-11-25 07:47:41.000,
    "us" 7/31/2026 5:33:50 AM, "epoch" /Date(1785350199000+0000)/.
    """

    id_key: IdKey = "ProspectActivityId"
    event_key: EventKey = "ActivityEvent"
    event_as_string: bool = False  # "201" instead of 201
    note_key: NoteKey = "ActivityNote"
    time_key: TimeKey = "ActivityDateTime"
    time_form: TimeForm = "plain"
    owner_key: OwnerKey = "ActivityOwnerEmail"
    fields_form: FieldsForm = "Fields"
    two_decimals: bool = False  # Number fields read back as "12.50"

    def __post_init__(self) -> None:
        for spec in fields(self):
            allowed = _CHOICES.get(spec.name)
            value = getattr(self, spec.name)
            if allowed is not None and value not in allowed:
                raise ValueError(f"ItemShape.{spec.name} must be one of {allowed}, not {value!r}")


_CHOICES: dict[str, tuple[object, ...]] = {
    "id_key": IdKey.__args__,  # type: ignore[attr-defined]
    "event_key": EventKey.__args__,  # type: ignore[attr-defined]
    "note_key": NoteKey.__args__,  # type: ignore[attr-defined]
    "time_key": TimeKey.__args__,  # type: ignore[attr-defined]
    "time_form": TimeForm.__args__,  # type: ignore[attr-defined]
    "owner_key": OwnerKey.__args__,  # type: ignore[attr-defined]
    "fields_form": FieldsForm.__args__,  # type: ignore[attr-defined]
    "event_as_string": (False, True),
    "two_decimals": (False, True),
}

# "standard" is the sandbox's historical shape and has its own writer (it also carries CreatedOn)
READ_SHAPES: dict[str, ItemShape] = {
    "standard": ItemShape(),
    "data": ItemShape(
        "Id", "EventCode", False, "ActivityNote", "CreatedOn", "us", "OwnerEmailAddress", "Data", True
    ),
    "flat": ItemShape(
        "ActivityId",
        "EventCode",
        False,
        "ActivityNote",
        "ActivityDateTime",
        "plain",
        "OwnerEmailAddress",
        "flat",
        True,
    ),
    "object": ItemShape(
        "Id",
        "ActivityEvent",
        True,
        "ActivityEvent_Note",
        "CreatedOn",
        "epoch",
        "CreatedByEmailAddress",
        "ActivityFields",
        True,
    ),
    "millis": ItemShape(
        "ProspectActivityId",
        "EventCode",
        True,
        "ActivityEvent_Note",
        "ActivityDateTime",
        "millis",
        "CreatedByEmailAddress",
        "Fields",
        True,
    ),
}
MIXED = "mixed"  # every item drawn at random (seeded, stable per activity) from all alternatives


def mixed_shape(seed: int, activity_id: str) -> ItemShape:
    """The shape of one activity under read_shape="mixed": the same activity always reads alike."""
    rng = random.Random(f"shape-{seed}-{activity_id}")  # reproducible, not secret
    return ItemShape(**{name: rng.choice(choices) for name, choices in _CHOICES.items()})  # type: ignore[arg-type]


def _two_decimals(value: str) -> str:
    return f"{Decimal(value):.2f}" if is_number(value) else value


def _moment(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, DATETIME_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def write_time(value: str, form: TimeForm) -> str:
    """Write a stored UTC time in one of the forms LeadSquared's reads use."""
    moment = _moment(value)
    if moment is None or form == "plain":
        return value
    if form == "millis":
        return f"{value}.000"
    if form == "epoch":
        return f"/Date({int(moment.timestamp()) * 1000}+0000)/"
    hour = moment.hour % 12 or 12
    noon = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment:%M:%S} {noon}"


def _field_values(
    activity: StoredActivity, shape: ItemShape, types: dict[int, ActivityType]
) -> dict[str, str]:
    if not shape.two_decimals:
        return dict(activity.fields)
    activity_type = types.get(activity.event)
    specs = activity_type.fields if activity_type else []
    numbers = {spec.schema_name for spec in specs if spec.data_type == "Number"}
    return {k: _two_decimals(v) if k in numbers else v for k, v in activity.fields.items()}


def _standard_item(activity: StoredActivity) -> dict[str, Any]:
    return {
        "ProspectActivityId": activity.id,
        "ActivityEvent": activity.event,
        "ActivityNote": activity.note,
        "ActivityDateTime": activity.activity_datetime,
        "ActivityOwnerEmail": activity.owner_email,
        "Fields": [{"SchemaName": k, "Value": v} for k, v in activity.fields.items()],
        "CreatedOn": activity.created_on,
    }


def _fields_part(values: dict[str, str], form: FieldsForm) -> dict[str, Any]:
    if form == "Fields":
        return {"Fields": [{"SchemaName": k, "Value": v} for k, v in values.items()]}
    if form == "Data":
        return {"Data": [{"Key": k, "Value": v} for k, v in values.items()]}
    if form == "ActivityFields":
        return {"ActivityFields": values}
    return dict(values)


def read_item(
    activity: StoredActivity, shape: ItemShape | str, seed: int, types: dict[int, ActivityType]
) -> dict[str, Any]:
    """One activity as GetActivitiesOfOpportunity lists it, in one of CONTRACT.md's shapes."""
    if shape == "standard":
        return _standard_item(activity)
    if isinstance(shape, str):
        shape = mixed_shape(seed, activity.id) if shape == MIXED else READ_SHAPES[shape]
    event: int | str = str(activity.event) if shape.event_as_string else activity.event
    item: dict[str, Any] = {
        shape.id_key: activity.id,
        shape.event_key: event,
        shape.note_key: activity.note,
        shape.owner_key: activity.owner_email,
        shape.time_key: write_time(activity.activity_datetime, shape.time_form),
    }
    return {**item, **_fields_part(_field_values(activity, shape, types), shape.fields_form)}


def setting_payload(activity_type: ActivityType) -> dict[str, Any]:
    """GetActivitySetting's answer for one activity type."""
    fields = [
        {
            "SchemaName": spec.schema_name,
            "DisplayName": spec.display_name,
            "DataType": spec.data_type,
            "IsMandatory": spec.mandatory,
            # a JSON *string*, as the real API sends it: clients must decode it twice
            "OptionSet": json.dumps([{"Value": option} for option in spec.options]),
        }
        for spec in activity_type.fields
    ]
    type_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"lsq-import-sandbox/activity-type/{activity_type.code}"))
    return {
        "ID": type_id,
        "Name": activity_type.name,
        "DisplayName": activity_type.display_name,
        "Fields": fields,
    }
