"""Yandex Direct API v5 client (https://api.direct.yandex.com/json/v5/).

Facts (../shared/reference/ad-platforms.md and the Direct API v5 reference):

- headers ``Authorization: Bearer <token>``, ``Client-Login`` (the advertiser, for agency
  tokens), ``Accept-Language: ru``;
- JSON services take ``{"method", "params"}`` and answer ``{"result"}`` or ``{"error":
  {"request_id", "error_code", "error_string", "error_detail"}}``; every reply carries
  ``Units: spent/remaining/limit`` (points of the advertiser). Error 152 means the points are
  spent: :class:`DirectUnitsExhausted`, to be tried again later (points come back hourly),
  never looped on;
- the Reports service (``reports``) takes ``{"params": ReportDefinition}`` and answers 200 with a
  TSV, or 201/202 while an offline report is built (``retryIn`` seconds to the next poll);
- ``bidmodifiers`` (get/add/set/delete) and ``retargetinglists`` (get/add) answer per item
  (``AddResults``/``SetResults``/``DeleteResults`` with ``Errors``/``Warnings``): one bad item does
  not fail the others. ``BidModifier`` of a retargeting adjustment is 0..1300; ``set`` takes at
  most 1,000 items per call, ``add`` at most 100 adjustments of one campaign.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
from django.utils.translation import gettext as _

from ..http import (
    PlatformError,
    PlatformHttp,
    PlatformUnavailable,
    base_url_setting,
    error_text,
    unparsed_error,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.direct.yandex.com/json/v5/"
NOT_ENOUGH_UNITS = 152
MODIFIER_MIN, MODIFIER_MAX = 0, 1300
MAX_SET_ITEMS = 1000
MAX_ADD_ITEMS = 1000
MAX_ADD_PER_CAMPAIGN = 100
MAX_DELETE_IDS = 1000
MAX_GET_CAMPAIGNS = 10
REPORT_FIELDS = ["Date", "CampaignId", "CampaignName", "Impressions", "Clicks", "Cost"]
REPORT_MAX_POLLS = 20
REPORT_MAX_WAIT = 60.0

# Points a call costs (per call, per item sent), as the stub charges them: an estimate that
# lets a caller stop before the remaining points cannot cover the next call.
UNIT_COSTS: dict[tuple[str, str], tuple[int, int]] = {
    ("bidmodifiers", "get"): (15, 0),
    ("bidmodifiers", "add"): (15, 1),
    ("bidmodifiers", "set"): (15, 1),
    ("bidmodifiers", "delete"): (15, 1),
    ("retargetinglists", "get"): (15, 0),
    ("retargetinglists", "add"): (15, 2),
}


def units_cost(service: str, method: str, items: int = 0) -> int:
    call, per_item = UNIT_COSTS.get((service, method), (15, 1))
    return call + per_item * items


@dataclass(frozen=True)
class Units:
    """The ``Units`` header: points spent by the call, remaining, and the daily limit."""

    spent: int
    remaining: int
    limit: int

    @classmethod
    def parse(cls, value: str | None) -> Units | None:
        parts = (value or "").split("/")
        if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            return None
        spent, remaining, limit = (int(p) for p in parts)
        return cls(spent, remaining, limit)


class DirectError(PlatformError):
    """Direct refused the request (its ``error`` object): ``code`` is its ``error_code``."""

    def __init__(self, message: str, *, code: str = "", request_id: str = "", **kwargs: Any):
        super().__init__(message, code=code, **kwargs)
        self.request_id = request_id


class DirectUnitsExhausted(DirectError):
    """Error 152: the advertiser's points are spent; try again later (they come back hourly)."""


class DirectReportNotReady(PlatformUnavailable):
    """The offline report was still being built after the allowed polls."""


@dataclass
class ItemResult:
    """One item's outcome of an add/set/delete: its id(s), or the errors that refused it."""

    ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def id(self) -> int | None:
        return self.ids[0] if self.ids else None


def _notices(values: Any) -> list[str]:
    out = []
    for notice in values or []:
        if not isinstance(notice, dict):
            continue
        text = " ".join(
            t for t in (error_text(notice.get("Message")), error_text(notice.get("Details"))) if t
        )
        out.append(f"{notice.get('Code', '')}: {text}".strip(": "))
    return out


def item_results(values: Any) -> list[ItemResult]:
    """``AddResults``/``SetResults``/``DeleteResults`` as :class:`ItemResult`, in order."""
    results = []
    for value in values or []:
        value = value if isinstance(value, dict) else {}
        ids = value.get("Ids")
        if ids is None:
            ids = [value["Id"]] if value.get("Id") is not None else []
        results.append(
            ItemResult(
                ids=[int(i) for i in ids],
                errors=_notices(value.get("Errors")),
                warnings=_notices(value.get("Warnings")),
            )
        )
    return results


def _error_of(body: Any) -> dict | None:
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _error_message(error: dict) -> str:
    parts = [error_text(error.get("error_string")), error_text(error.get("error_detail"))]
    return ": ".join(p for p in parts if p) or _("ошибка Яндекс Директа")


def direct_error(response: httpx.Response) -> tuple[str, str]:
    """``(error_code, "error_string: error_detail")`` of Direct's error body; any other body is
    ``HTTP <status>`` only."""
    try:
        error = _error_of(response.json())
    except ValueError:
        return unparsed_error(response)
    if error is None:
        return unparsed_error(response)
    return str(error.get("error_code", "error"))[:50], _error_message(error)


def _raise(error: dict, status: int | None = None) -> None:
    code = str(error.get("error_code", ""))
    exc_class = DirectUnitsExhausted if code == str(NOT_ENOUGH_UNITS) else DirectError
    raise exc_class(
        _error_message(error),
        code=code,
        request_id=str(error.get("request_id", "")),
        status=status,
        body={"error": error},
    )


def _reraise_direct(exc: PlatformError) -> None:
    """A 4xx carrying Direct's error object becomes :class:`DirectError` (152:
    :class:`DirectUnitsExhausted`); anything else is left to the caller to re-raise."""
    error = _error_of(exc.body)
    if error is not None:
        _raise(error, exc.status)


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def add_chunks(adjustments: list[tuple[int, int, int]]) -> Iterator[list[tuple[int, int, int]]]:
    """``(campaign_id, retargeting_condition_id, modifier)`` in calls of at most
    :data:`MAX_ADD_ITEMS` items and at most :data:`MAX_ADD_PER_CAMPAIGN` of one campaign."""
    batch: list[tuple[int, int, int]] = []
    per_campaign: dict[int, int] = {}
    for item in adjustments:
        if len(batch) >= MAX_ADD_ITEMS or per_campaign.get(item[0], 0) >= MAX_ADD_PER_CAMPAIGN:
            yield batch
            batch, per_campaign = [], {}
        batch.append(item)
        per_campaign[item[0]] = per_campaign.get(item[0], 0) + 1
    if batch:
        yield batch


class YandexDirectClient:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        login: str = "",
        sleep: Callable[[float], None] = time.sleep,
        **http_options: Any,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept-Language": "ru"}
        if login:
            headers["Client-Login"] = login
        self.http = PlatformHttp(
            base_url or DEFAULT_BASE_URL,
            error_parser=direct_error,
            headers=headers,
            sleep=sleep,
            **http_options,
        )
        self._sleep = sleep
        self.units: Units | None = None
        self.units_log: list[tuple[str, Units]] = []

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> YandexDirectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- points ---------------------------------------------------------------------------

    def _record_units(self, what: str, response: httpx.Response) -> None:
        units = Units.parse(response.headers.get("Units"))
        if units is not None:
            self.units = units
            self.units_log.append((what, units))

    def can_afford(self, service: str, method: str, items: int = 0) -> bool:
        """Whether the points left (as of the last reply) cover the next call; unknown before
        the first call."""
        if self.units is None:
            return True
        return self.units.remaining >= units_cost(service, method, items)

    # --- the JSON services ----------------------------------------------------------------

    def call(self, service: str, method: str, params: dict, *, creates: bool = False) -> dict:
        """One call of a JSON service; its ``result``, or :class:`DirectError`."""
        try:
            response = self.http.request(
                "POST", service, json={"method": method, "params": params}, creates=creates
            )
        except PlatformError as exc:
            _reraise_direct(exc)
            raise
        self._record_units(f"{service}.{method}", response)
        try:
            body = response.json()
        except ValueError as exc:
            raise DirectError(
                _("Яндекс Директ ответил не в формате JSON"), status=response.status_code
            ) from exc
        error = _error_of(body)
        if error is not None:
            _raise(error, response.status_code)
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict):
            raise DirectError(_("в ответе Яндекс Директа нет result"), status=response.status_code)
        return result

    # --- Reports ----------------------------------------------------------------------------

    def report_tsv(
        self,
        *,
        date_from: date,
        date_to: date,
        name: str,
        include_vat: bool = True,
        max_polls: int = REPORT_MAX_POLLS,
        max_wait: float = REPORT_MAX_WAIT,
    ) -> str:
        """A CAMPAIGN_PERFORMANCE_REPORT (``REPORT_FIELDS``) as TSV with the column header and
        money in currency units (not micros). ``name`` identifies the report: polls repeat the
        same request; 201/202 wait ``retryIn`` seconds, at most ``max_polls`` times."""
        body = {
            "params": {
                "SelectionCriteria": {
                    "DateFrom": date_from.isoformat(),
                    "DateTo": date_to.isoformat(),
                },
                "FieldNames": REPORT_FIELDS,
                "ReportName": name,
                "ReportType": "CAMPAIGN_PERFORMANCE_REPORT",
                "DateRangeType": "CUSTOM_DATE",
                "Format": "TSV",
                "IncludeVAT": "YES" if include_vat else "NO",
                "IncludeDiscount": "NO",
            }
        }
        headers = {
            "processingMode": "auto",
            "returnMoneyInMicros": "false",
            "skipReportHeader": "true",
            "skipReportSummary": "true",
        }
        for poll in range(max_polls + 1):
            try:
                response = self.http.request("POST", "reports", json=body, headers=headers)
            except PlatformError as exc:
                _reraise_direct(exc)
                raise
            self._record_units("reports", response)
            if response.status_code == 200:
                return response.text
            if response.status_code not in (201, 202) or poll == max_polls:
                break
            retry_in = response.headers.get("retryIn", "")
            wait = float(retry_in) if retry_in.replace(".", "", 1).isdigit() else 5.0
            self._sleep(min(max_wait, wait))
        raise DirectReportNotReady(
            _("отчёт Яндекс Директа не готов после %(polls)s проверок") % {"polls": max_polls}
        )

    # --- retargeting lists ------------------------------------------------------------------

    def retargeting_lists(self, *, types: Iterable[str] = ("AUDIENCE",)) -> list[dict]:
        result = self.call(
            "retargetinglists",
            "get",
            {
                "SelectionCriteria": {"Types": list(types)},
                "FieldNames": ["Id", "Type", "Name", "Rules"],
            },
        )
        return list(result.get("RetargetingLists") or [])

    def retargeting_lists_add(self, lists: list[dict]) -> list[ItemResult]:
        """Create lists (``RetargetingListAddItem``s); per-item results. Never repeated blindly
        after a timeout (:class:`~integrations.http.OutcomeUnknown`): look the list up first."""
        result = self.call("retargetinglists", "add", {"RetargetingLists": lists}, creates=True)
        return item_results(result.get("AddResults"))

    # --- bid modifiers ----------------------------------------------------------------------

    def bid_modifiers(
        self,
        campaign_ids: list[int],
        *,
        levels: Iterable[str] = ("CAMPAIGN", "AD_GROUP"),
        types: Iterable[str] = ("RETARGETING_ADJUSTMENT",),
    ) -> list[dict]:
        """Retargeting adjustments of the campaigns, flattened: ``{"Id", "CampaignId",
        "AdGroupId", "Level", "RetargetingConditionId", "BidModifier"}``."""
        found: list[dict] = []
        for batch in chunks(list(campaign_ids), MAX_GET_CAMPAIGNS):
            result = self.call(
                "bidmodifiers",
                "get",
                {
                    "SelectionCriteria": {
                        "CampaignIds": batch,
                        "Levels": list(levels),
                        "Types": list(types),
                    },
                    "FieldNames": ["Id", "CampaignId", "AdGroupId", "Level", "Type"],
                    "RetargetingAdjustmentFieldNames": ["RetargetingConditionId", "BidModifier"],
                },
            )
            for item in result.get("BidModifiers") or []:
                adjustment = item.get("RetargetingAdjustment") or {}
                found.append(
                    {
                        "Id": item.get("Id"),
                        "CampaignId": item.get("CampaignId"),
                        "AdGroupId": item.get("AdGroupId"),
                        "Level": item.get("Level"),
                        "RetargetingConditionId": adjustment.get("RetargetingConditionId"),
                        "BidModifier": adjustment.get("BidModifier"),
                    }
                )
        return found

    def bid_modifiers_add(self, adjustments: list[tuple[int, int, int]]) -> list[ItemResult]:
        """One call adding ``(campaign_id, retargeting_condition_id, modifier)`` adjustments,
        each its own item (so each gets its own result); at most :data:`MAX_ADD_ITEMS` and
        :data:`MAX_ADD_PER_CAMPAIGN` per campaign (:func:`add_chunks`)."""
        if len(adjustments) > MAX_ADD_ITEMS:
            raise ValueError(f"at most {MAX_ADD_ITEMS} adjustments per call")
        items = [
            {
                "CampaignId": campaign_id,
                "RetargetingAdjustments": [
                    {"RetargetingConditionId": condition_id, "BidModifier": modifier}
                ],
            }
            for campaign_id, condition_id, modifier in adjustments
        ]
        result = self.call("bidmodifiers", "add", {"BidModifiers": items}, creates=True)
        return item_results(result.get("AddResults"))

    def bid_modifiers_set(self, values: list[tuple[int, int]]) -> list[ItemResult]:
        """One call setting ``(bid_modifier_id, modifier)`` pairs (at most
        :data:`MAX_SET_ITEMS`)."""
        if len(values) > MAX_SET_ITEMS:
            raise ValueError(f"at most {MAX_SET_ITEMS} items per call")
        items = [{"Id": modifier_id, "BidModifier": value} for modifier_id, value in values]
        result = self.call("bidmodifiers", "set", {"BidModifiers": items})
        return item_results(result.get("SetResults"))

    def bid_modifiers_delete(self, ids: list[int]) -> list[ItemResult]:
        if len(ids) > MAX_DELETE_IDS:
            raise ValueError(f"at most {MAX_DELETE_IDS} ids per call")
        result = self.call("bidmodifiers", "delete", {"SelectionCriteria": {"Ids": list(ids)}})
        return item_results(result.get("DeleteResults"))


def base_url() -> str:
    """``YANDEX_DIRECT_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("YANDEX_DIRECT_BASE_URL", DEFAULT_BASE_URL)
