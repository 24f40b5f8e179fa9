"""Finding opportunities from leads: by a unique lead field, of one lead, and by id in bulk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from importer.sandbox._account import (
    MAX_IDS_PER_LOOKUP,
    OPPORTUNITIES_BY_ID_PATH,
    OPPORTUNITIES_BY_LEAD_FIELD_PATH,
    OPPORTUNITIES_OF_LEAD_PATH,
    Account,
    Lead,
    Opportunity,
)
from importer.sandbox._rules import show
from importer.sandbox._wire import (
    Rejected,
    Reply,
    Request,
    integer_param,
    json_body,
    json_reply,
    object_body,
    paging,
    required_param,
    sorting,
)

_NOT_FOUND = "MXInvalidEntityReferenceException"
# unique lead fields a look-up may name, and how a lead's value is read; emails compare
# case-insensitively, phone numbers exactly as stored (+91-XXXXXXXXXX): callers normalise first
_LEAD_FIELDS: dict[str, Callable[[Lead], str | None]] = {
    "EmailAddress": lambda lead: lead.email_address.casefold() if lead.email_address else None,
    "Mobile": lambda lead: lead.mobile,
    "Phone": lambda lead: lead.mobile,
    "ProspectID": lambda lead: lead.id,
}


def _item(opportunity: Opportunity) -> dict[str, Any]:
    """One opportunity as the look-up endpoints list it (both id names: CONTRACT.md assumes either)."""
    return {
        "OpportunityId": opportunity.id,
        "ProspectActivityId": opportunity.id,
        "ProspectId": opportunity.lead_id,
        "RelatedProspectId": opportunity.lead_id,
        "OpportunityEvent": str(opportunity.event_code),
        "OpportunityEventType": str(opportunity.event_code),
        "Name": opportunity.name,
        "CreatedOn": opportunity.created_on,
    }


def _lookup_parameter(body: dict[str, Any]) -> tuple[str, str]:
    parameter = body.get("Parameter")
    if not isinstance(parameter, dict):
        raise Rejected(400, 'The body must have "Parameter": {"LookupName", "LookupValue", "SqlOperator"}')
    name, value = parameter.get("LookupName"), parameter.get("LookupValue")
    if not isinstance(name, str) or name not in _LEAD_FIELDS:
        raise Rejected(400, f"LookupName {show(name)} is not a unique lead field ({', '.join(_LEAD_FIELDS)})")
    if not isinstance(value, str) or not value:
        raise Rejected(400, "LookupValue must be a non-empty string")
    if parameter.get("SqlOperator", "=") != "=":
        raise Rejected(400, 'SqlOperator must be "="')
    return name, value.casefold() if name == "EmailAddress" else value


class LookupEndpoints:
    """The three opportunity look-up endpoints of CONTRACT.md over one account's leads."""

    def __init__(self, account: Account) -> None:
        self.account = account

    def routes(self) -> dict[str, tuple[str, Callable[[Request], Reply]]]:
        return {
            OPPORTUNITIES_BY_LEAD_FIELD_PATH: ("POST", self.by_lead_field),
            OPPORTUNITIES_OF_LEAD_PATH: ("POST", self.of_lead),
            OPPORTUNITIES_BY_ID_PATH: ("POST", self.by_id),
        }

    def _of_leads(self, lead_ids: set[str], event_code: int | None = None) -> list[Opportunity]:
        return [
            opportunity
            for opportunity in self.account.opportunity_records
            if opportunity.lead_id in lead_ids and event_code in (None, opportunity.event_code)
        ]

    def by_lead_field(self, request: Request) -> Reply:
        body = object_body(request)
        name, value = _lookup_parameter(body)
        skip, size = paging(body)
        _column, descending = sorting(body)
        read = _LEAD_FIELDS[name]
        leads = {lead.id for lead in self.account.leads if read(lead) == value}
        found = sorted(
            self._of_leads(leads), key=lambda opportunity: opportunity.created_on, reverse=descending
        )
        items = [_item(opportunity) for opportunity in found[skip : skip + size]]
        return json_reply(200, {"RecordCount": len(found), "List": items})

    def of_lead(self, request: Request) -> Reply:
        lead_id = required_param(request, "leadId")
        event_code = integer_param(request, "opportunityType")
        if lead_id not in {lead.id for lead in self.account.leads}:
            raise Rejected(500, "Lead not found", _NOT_FOUND)
        found = self._of_leads({lead_id}, event_code)
        return json_reply(200, {"RecordCount": len(found), "List": [_item(o) for o in found]})

    def by_id(self, request: Request) -> Reply:
        searches = _search_parameters(json_body(request))
        records = {opportunity.id: opportunity for opportunity in self.account.opportunity_records}
        answer = []
        for code, ids in searches:
            found = [records[i] for i in ids if i in records and records[i].event_code == code]
            answer.append(
                {"EventCode": code, "RecordCount": len(found), "Opportunities": [_item(o) for o in found]}
            )
        return json_reply(200, answer)


def _search_parameters(body: object) -> list[tuple[int, list[str]]]:
    """(event code, ids) of each SearchParameters entry; more than 2,000 ids in all is refused."""
    searches = body.get("SearchParameters") if isinstance(body, dict) else None
    if not isinstance(searches, list) or not searches:
        raise Rejected(
            400, 'The body must be {"SearchParameters": [{"EventCode": ..., "ProspectActivityId": [...]}]}'
        )
    parsed: list[tuple[int, list[str]]] = []
    for search in searches:
        code = search.get("EventCode") if isinstance(search, dict) else None
        ids = search.get("ProspectActivityId") if isinstance(search, dict) else None
        if type(code) is not int or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise Rejected(
                400, "Each search needs an integer EventCode and a list of ProspectActivityId strings"
            )
        parsed.append((code, ids))
    total = sum(len(ids) for _, ids in parsed)
    if total > MAX_IDS_PER_LOOKUP:
        raise Rejected(
            400, f"At most {MAX_IDS_PER_LOOKUP} opportunity ids can be looked up in one call, got {total}"
        )
    return parsed
