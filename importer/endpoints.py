"""Every LeadSquared path this project calls, in one place (docs/leadsquared-api.md describes each).

Only `importer.client.LsqClient` builds URLs from these; the sandbox serves the same paths.
"""

from __future__ import annotations

WHO_AM_I_PATH = "/v2/Authentication.svc/UserByAccessKey.Get"
ACTIVITY_TYPES_PATH = "/v2/ProspectActivity.svc/ActivityTypes.Get"
ACTIVITY_SETTING_PATH = "/v2/ProspectActivity.svc/CustomActivity/GetActivitySetting"
ACTIVITIES_PATH = "/v2/OpportunityManagement.svc/GetActivitiesOfOpportunity"
BULK_ADD_PATH = "/v2/ProspectActivity.svc/Bulk/CustomActivity/Add/ByOpportunityId"
OPPORTUNITIES_BY_LEAD_FIELD_PATH = "/v2/OpportunityManagement.svc/GetOpportunitiesByUniqueLeadField"
OPPORTUNITIES_OF_LEAD_PATH = "/v2/OpportunityManagement.svc/GetOpportunitiesOfLead"
OPPORTUNITIES_BY_ID_PATH = "/v2/OpportunityManagement.svc/GetOpportunitiesById"

# LeadSquared's API hosts by region (CONTRACT.md, confirmed): what a mistyped --host is told
API_HOSTS = (
    "api.leadsquared.com",  # Singapore
    "api-us11.leadsquared.com",
    "api-in21.leadsquared.com",
    "api-in22.leadsquared.com",
    "api-ir31.leadsquared.com",
    "api-ca12.leadsquared.com",
)
