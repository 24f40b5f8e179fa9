"""Misbehaviour the sandbox can be told to show, and the answers each fault gives."""

from __future__ import annotations

from dataclasses import dataclass, field

from importer.sandbox._account import ENDPOINT_PATHS, RowErrors, endpoint_name
from importer.sandbox._shapes import MIXED, READ_SHAPES, ItemShape

# the kinds a bulk-add call can draw or have queued; "ok" is no fault
FAULT_KINDS = (
    "429",
    "500_mx",
    "500_before",
    "500_after",
    "drop_after",
    "drop_before",
    "200_null_before",
    "200_null_after",
    "200_invalid_lead",
    "200_not_json_before",
    "200_not_json_after",
    "partial",
    "404",
    "ok",
)
# answered without storing anything
FAULTS_BEFORE = frozenset(
    {
        "429",
        "500_mx",
        "500_before",
        "drop_before",
        "200_null_before",
        "200_invalid_lead",
        "200_not_json_before",
        "404",
    }
)
# answered after storing the call's valid rows
FAULTS_AFTER = frozenset({"500_after", "drop_after", "200_null_after", "200_not_json_after"})
THROTTLE_STATUSES = (429, 403, 200)
_ENDPOINTS = frozenset(ENDPOINT_PATHS) | {endpoint_name(path) for path in ENDPOINT_PATHS}


@dataclass
class Faults:
    """Misbehaviour to inject into bulk-add calls, and the response dialect to speak.

    Probabilities are per bulk-add call and exclusive (their sum must not exceed 1); one draw of
    `random.Random(seed)` picks at most one fault, so a run is reproducible from its seed.
    Every option is described in the package docstring (`help(importer.sandbox)`).
    """

    seed: int = 0
    latency_ms: tuple[float, float] = (0, 0)  # uniform extra latency on every request
    # endpoint name or path -> (low, high) ms; replaces latency_ms on those endpoints
    latency_ms_by_endpoint: dict[str, tuple[float, float]] = field(default_factory=dict)
    p_throttle: float = 0.0  # spurious throttle (throttle_status), nothing stored
    p_500_mx: float = 0.0  # 500 with an MX...Exception body, nothing stored
    p_500_before: float = 0.0  # 500/502/503 with a plain non-JSON body, nothing stored
    p_500_after: float = 0.0  # rows stored, then 500 with a plain non-JSON body
    p_drop_after: float = 0.0  # rows stored, then the connection closes with no response
    p_200_null_before: float = 0.0  # 200 Status Error NullReferenceException, nothing stored
    p_200_null_after: float = 0.0  # rows stored, then the same 200 NullReferenceException
    p_200_invalid_lead: float = 0.0  # 200 {"Status":"Error","ExceptionMessage":"Invalid lead ID"}
    p_200_not_json_before: float = 0.0  # 200 with an HTML body, nothing stored
    p_200_not_json_after: float = 0.0  # rows stored, then 200 with an HTML body
    p_partial: float = 0.0  # only k of the call's valid rows stored (0 < k < valid), count-only answer
    count_only: bool = False  # answer {"Status":"Success","Message":{"Count": n}} instead of rows
    row_errors: RowErrors = "per_row"  # "whole_batch": one bad row rejects the call, unnamed
    # item shape of GetActivitiesOfOpportunity: a READ_SHAPES name, "mixed", or an ItemShape
    read_shape: str | ItemShape = "standard"
    read_lag_s: float = 0.0  # an activity is listed only this many clock seconds after creation
    throttle_status: int = 429  # status of throttled answers: 429, 403 or 200
    plain_404: bool = False  # unknown paths: plain-text 404 instead of the JSON envelope
    reads_fail: bool = False  # GetActivitiesOfOpportunity answers 503: a look-up itself fails

    def __post_init__(self) -> None:
        chances = self.chances()
        if any(not 0 <= p <= 1 for _, p in chances) or sum(p for _, p in chances) > 1:
            raise ValueError("fault probabilities must be within 0..1 and sum to at most 1")
        if self.row_errors not in ("per_row", "whole_batch"):
            raise ValueError(f"row_errors must be 'per_row' or 'whole_batch', not {self.row_errors!r}")
        names = (*READ_SHAPES, MIXED)
        if not isinstance(self.read_shape, ItemShape) and self.read_shape not in names:
            raise ValueError(f"read_shape must be an ItemShape or one of {names}, not {self.read_shape!r}")
        if self.throttle_status not in THROTTLE_STATUSES:
            raise ValueError(
                f"throttle_status must be one of {THROTTLE_STATUSES}, not {self.throttle_status!r}"
            )
        if self.read_lag_s < 0:
            raise ValueError("read_lag_s must be 0 or more")
        unknown = sorted(set(self.latency_ms_by_endpoint) - _ENDPOINTS)
        if unknown:
            raise ValueError(f"latency_ms_by_endpoint keys must be endpoint names or paths, not {unknown}")

    def chances(self) -> list[tuple[str, float]]:
        """(fault kind, probability) of every randomly drawn fault."""
        return [
            ("429", self.p_throttle),
            ("500_mx", self.p_500_mx),
            ("500_before", self.p_500_before),
            ("500_after", self.p_500_after),
            ("drop_after", self.p_drop_after),
            ("200_null_before", self.p_200_null_before),
            ("200_null_after", self.p_200_null_after),
            ("200_invalid_lead", self.p_200_invalid_lead),
            ("200_not_json_before", self.p_200_not_json_before),
            ("200_not_json_after", self.p_200_not_json_after),
            ("partial", self.p_partial),
        ]

    def latency_for(self, path: str) -> tuple[float, float]:
        """The latency range of one endpoint."""
        by_endpoint = self.latency_ms_by_endpoint
        return by_endpoint.get(path) or by_endpoint.get(endpoint_name(path)) or self.latency_ms
