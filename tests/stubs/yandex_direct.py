"""Loopback stub of the Yandex Direct API v5 (base `.../json/v5/`): Reports, retargeting lists,
bid modifiers.

What it checks, as the real API does (reference: /work/shared/reference/ad-platforms.md and the
Direct API v5 reference):

- `Authorization: Bearer <token>` of a configured account (else error 53), and `Client-Login`
  naming an advertiser that token may act for (else error 513);
- JSON services: a POST body `{"method", "params"}` (else 8000), a known method (else 55); errors
  are `{"error": {"request_id", "error_code", "error_string", "error_detail"}}` (HTTP 200 for
  the JSON services, 400 for Reports, as the API answers);
- points: every JSON call costs points (`UNIT_COSTS`: per call and per item sent), each reply
  carries `Units: spent/remaining/limit`; a call the remaining points cannot pay is refused
  with error 152 and changes nothing;
- `bidmodifiers`: `get` (SelectionCriteria CampaignIds (1..10) or Ids, Levels, Types;
  FieldNames required), `add` (`{"BidModifiers": [{"CampaignId", "RetargetingAdjustments":
  [{"RetargetingConditionId", "BidModifier"}]}]}`: more than 100 adjustments of one campaign in
  a call refuses the call (9300); per item: a BidModifier outside 0..1300 (5005), an unknown
  campaign or retargeting list (8800), an adjustment of that list already in the campaign
  (9802) refuse that item only), `set` (`{"BidModifiers": [{"Id", "BidModifier"}]}`, at most
  1,000 items (9300); per item: unknown Id (8800), outside 0..1300 (5005)), `delete`
  (SelectionCriteria Ids); results `AddResults`/`SetResults`/`DeleteResults`, one per item;
- `retargetinglists`: `get` (SelectionCriteria Ids/Types; FieldNames required), `add` (Name and
  Rules with Arguments of ExternalId and an Operator required; an AUDIENCE list's segment must
  be one the advertiser has: `segments`);
- `reports`: `{"params": ReportDefinition}` with SelectionCriteria DateFrom/DateTo, FieldNames,
  ReportName, ReportType, DateRangeType CUSTOM_DATE, Format TSV; a new report answers 201 with
  `retryIn`, then (after `report_polls` polls) 200 with the TSV built from `stats`, money as
  micros unless `returnMoneyInMicros: false`, with the report header/summary lines unless
  skipped.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubReply, StubServer, json_response, read_json

DEFAULT_TOKEN = "test-direct-token"
DEFAULT_LOGIN = "test-advertiser"
DEFAULT_UNITS = 64_000
MODIFIER_MIN, MODIFIER_MAX = 0, 1300
MAX_SET_ITEMS = 1000
MAX_ADD_PER_CAMPAIGN = 100
MAX_GET_CAMPAIGNS = 10
UNIT_COSTS: dict[tuple[str, str], tuple[int, int]] = {
    ("bidmodifiers", "get"): (15, 0),
    ("bidmodifiers", "add"): (15, 1),
    ("bidmodifiers", "set"): (15, 1),
    ("bidmodifiers", "delete"): (15, 1),
    ("retargetinglists", "get"): (15, 0),
    ("retargetinglists", "add"): (15, 2),
}
REPORT_FIELDS = {"Date", "CampaignId", "CampaignName", "Impressions", "Clicks", "Cost"}


@dataclass
class Advertiser:
    login: str
    units_limit: int = DEFAULT_UNITS
    units_remaining: int = DEFAULT_UNITS
    campaigns: set[int] = field(default_factory=set)
    segments: set[int] = field(default_factory=set)  # Yandex Audiences segments it may use
    lists: dict[int, dict] = field(default_factory=dict)
    modifiers: dict[int, dict] = field(default_factory=dict)
    # (day ISO, campaign id) -> {"CampaignName", "Impressions", "Clicks", "Cost" (Decimal)}
    stats: dict[tuple[str, int], dict] = field(default_factory=dict)
    reports: dict[str, int] = field(default_factory=dict)  # ReportName -> polls seen


class DirectFault(Exception):
    def __init__(self, code: int, string: str, detail: str = "") -> None:
        super().__init__(string)
        self.code = code
        self.string = string
        self.detail = detail


def _notice(code: int, message: str, details: str = "") -> dict:
    return {"Code": code, "Message": message, "Details": details}


class YandexDirectStub(StubServer):
    prefix = "/json/v5/"

    def __init__(
        self,
        *,
        accounts: dict[str, set[str]] | None = None,
        units: int = DEFAULT_UNITS,
        report_polls: int = 1,
        retry_in: int = 1,
        **options: Any,
    ) -> None:
        """``accounts``: token -> the Client-Logins it may act for."""
        super().__init__(**options)
        self.accounts = accounts or {DEFAULT_TOKEN: {DEFAULT_LOGIN}}
        self.report_polls = report_polls
        self.retry_in = retry_in
        self.advertisers: dict[str, Advertiser] = {}
        for logins in self.accounts.values():
            for login in logins:
                self.advertisers[login] = Advertiser(login, units, units)
        self._ids = itertools.count(10_001)
        self.credentials = {"token": DEFAULT_TOKEN}
        self.login = DEFAULT_LOGIN

    # --- seeding and inspection ------------------------------------------------------------

    def advertiser(self, login: str = DEFAULT_LOGIN) -> Advertiser:
        return self.advertisers[login]

    def add_campaigns(self, *ids: int, login: str = DEFAULT_LOGIN) -> None:
        with self._lock:
            self.advertisers[login].campaigns.update(ids)

    def add_segments(self, *ids: int, login: str = DEFAULT_LOGIN) -> None:
        with self._lock:
            self.advertisers[login].segments.update(ids)

    def add_stats(
        self,
        day: str,
        campaign_id: int,
        *,
        name: str,
        impressions: int,
        clicks: int,
        cost: str,
        login: str = DEFAULT_LOGIN,
    ) -> None:
        with self._lock:
            self.advertisers[login].stats[(day, campaign_id)] = {
                "CampaignName": name,
                "Impressions": impressions,
                "Clicks": clicks,
                "Cost": Decimal(cost),
            }

    def set_units(self, remaining: int, login: str = DEFAULT_LOGIN) -> None:
        with self._lock:
            self.advertisers[login].units_remaining = remaining

    def modifiers_state(self, login: str = DEFAULT_LOGIN) -> dict[int, tuple[int, int, int]]:
        """Id -> (campaign, retargeting list, modifier): what a test compares."""
        with self._lock:
            return {
                mid: (m["CampaignId"], m["RetargetingConditionId"], m["BidModifier"])
                for mid, m in self.advertisers[login].modifiers.items()
            }

    def seed_modifier(
        self, campaign_id: int, condition_id: int, value: int, login: str = DEFAULT_LOGIN
    ) -> int:
        with self._lock:
            mid = next(self._ids)
            self.advertisers[login].modifiers[mid] = {
                "CampaignId": campaign_id,
                "RetargetingConditionId": condition_id,
                "BidModifier": value,
            }
            return mid

    def seed_list(self, segment_id: int, name: str = "", login: str = DEFAULT_LOGIN) -> int:
        with self._lock:
            lid = next(self._ids)
            self.advertisers[login].lists[lid] = {
                "Id": lid,
                "Type": "AUDIENCE",
                "Name": name or f"list {lid}",
                "Rules": [{"Operator": "ALL", "Arguments": [{"ExternalId": segment_id}]}],
            }
            return lid

    # --- StubServer hooks --------------------------------------------------------------------

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {
            "error": {
                "request_id": uuid.uuid4().hex,
                "error_code": int(code) if str(code).isdigit() else 1000,
                "error_string": message,
                "error_detail": "",
            }
        }

    def code_for_status(self, status: int) -> str:
        return {404: "8800", 429: "56", 413: "9300"}.get(
            status, "1000" if status >= 500 else "8000"
        )

    def _fault(self, fault: DirectFault, status: int, advertiser: Advertiser | None) -> Response:
        body = {
            "error": {
                "request_id": uuid.uuid4().hex,
                "error_code": fault.code,
                "error_string": fault.string,
                "error_detail": fault.detail,
            }
        }
        return json_response(body, status, self._units_header(advertiser, 0))

    @staticmethod
    def _units_header(advertiser: Advertiser | None, spent: int) -> dict[str, str]:
        if advertiser is None:
            return {}
        return {"Units": f"{spent}/{advertiser.units_remaining}/{advertiser.units_limit}"}

    def _authenticate(self, request: Request) -> Advertiser:
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        if token not in self.accounts:
            raise DirectFault(53, "Ошибка авторизации", "Неверный OAuth-токен")
        login = request.headers.get("Client-Login", "")
        if login not in self.accounts[token]:
            raise DirectFault(
                513,
                "Ваш логин не подключен к Яндекс Директу",
                f"Client-Login {login!r} недоступен этому токену",
            )
        return self.advertisers[login]

    def handle(self, request: Request) -> Response:
        service = request.path[len(self.prefix) :].strip("/")
        if request.method != "POST":
            raise StubReply(405, self.error_body(405, "8000", "POST only"))
        is_report = service == "reports"
        advertiser = None
        try:
            advertiser = self._authenticate(request)
            if is_report:
                return self._report(request, advertiser)
            body = read_json(request)
            if not isinstance(body, dict) or not isinstance(body.get("params"), dict):
                raise DirectFault(8000, "Неверный запрос", "нужен объект {method, params}")
            method = body.get("method")
            handler = getattr(self, f"_{service}_{method}", None)
            if handler is None or (service, method) not in UNIT_COSTS:
                raise DirectFault(55, "Не найден метод", f"{service}.{method}")
            with self._lock:
                items = self._count_items(service, method, body["params"])
                call_cost, per_item = UNIT_COSTS[(service, method)]
                cost = call_cost + per_item * items
                if advertiser.units_remaining < cost:
                    raise DirectFault(
                        152,
                        "Недостаточно баллов",
                        f"нужно {cost}, осталось {advertiser.units_remaining}",
                    )
                result = handler(advertiser, body["params"])
                advertiser.units_remaining -= cost
                return json_response({"result": result}, 200, self._units_header(advertiser, cost))
        except DirectFault as fault:
            return self._fault(fault, 400 if is_report else 200, advertiser)

    @staticmethod
    def _count_items(service: str, method: str, params: dict) -> int:
        if method in ("add", "set"):
            key = "BidModifiers" if service == "bidmodifiers" else "RetargetingLists"
            items = params.get(key)
            if not isinstance(items, list) or not items:
                raise DirectFault(8000, "Неверный запрос", f"нужен непустой массив {key}")
            if service == "bidmodifiers" and method == "add":
                return sum(len(i.get("RetargetingAdjustments") or []) for i in items)
            return len(items)
        if method == "delete":
            ids = (params.get("SelectionCriteria") or {}).get("Ids")
            if not isinstance(ids, list) or not ids:
                raise DirectFault(8000, "Неверный запрос", "нужен SelectionCriteria.Ids")
            return len(ids)
        return 0

    # --- bidmodifiers --------------------------------------------------------------------------

    def _bidmodifiers_get(self, adv: Advertiser, params: dict) -> dict:
        criteria = params.get("SelectionCriteria") or {}
        fields = params.get("FieldNames")
        if not fields:
            raise DirectFault(8000, "Неверный запрос", "FieldNames обязателен")
        campaigns = criteria.get("CampaignIds")
        ids = criteria.get("Ids")
        if not campaigns and not ids:
            raise DirectFault(4001, "Неверно задан критерий отбора", "нужны CampaignIds или Ids")
        if campaigns and len(campaigns) > MAX_GET_CAMPAIGNS:
            raise DirectFault(9300, "Превышено ограничение", "CampaignIds: не более 10")
        levels = set(criteria.get("Levels") or ["CAMPAIGN", "AD_GROUP"])
        types = set(criteria.get("Types") or ["RETARGETING_ADJUSTMENT"])
        adjustment_fields = params.get("RetargetingAdjustmentFieldNames") or []
        out = []
        for mid, m in sorted(adv.modifiers.items()):
            if campaigns and m["CampaignId"] not in campaigns:
                continue
            if ids and mid not in ids:
                continue
            if "CAMPAIGN" not in levels or "RETARGETING_ADJUSTMENT" not in types:
                continue
            full = {
                "Id": mid,
                "CampaignId": m["CampaignId"],
                "AdGroupId": None,
                "Level": "CAMPAIGN",
                "Type": "RETARGETING_ADJUSTMENT",
            }
            item = {k: v for k, v in full.items() if k in fields}
            if adjustment_fields:
                item["RetargetingAdjustment"] = {
                    k: m[k]
                    for k in ("RetargetingConditionId", "BidModifier")
                    if k in adjustment_fields
                }
            out.append(item)
        return {"BidModifiers": out}

    @staticmethod
    def _modifier_errors(value: Any) -> list[dict]:
        if isinstance(value, bool) or not isinstance(value, int):
            return [_notice(5005, "Поле задано неверно", "BidModifier должен быть целым")]
        if not MODIFIER_MIN <= value <= MODIFIER_MAX:
            return [
                _notice(
                    5005,
                    "Поле задано неверно",
                    f"BidModifier должен быть от {MODIFIER_MIN} до {MODIFIER_MAX}",
                )
            ]
        return []

    def _bidmodifiers_add(self, adv: Advertiser, params: dict) -> dict:
        items = params["BidModifiers"]
        per_campaign: dict[Any, int] = {}
        for item in items:
            count = len(item.get("RetargetingAdjustments") or [])
            per_campaign[item.get("CampaignId")] = (
                per_campaign.get(item.get("CampaignId"), 0) + count
            )
        if any(count > MAX_ADD_PER_CAMPAIGN for count in per_campaign.values()):
            raise DirectFault(
                9300, "Превышено ограничение", "не более 100 корректировок одной кампании за вызов"
            )
        results = []
        for item in items:
            campaign = item.get("CampaignId")
            adjustments = item.get("RetargetingAdjustments") or []
            errors: list[dict] = []
            if campaign not in adv.campaigns:
                errors.append(_notice(8800, "Объект не найден", f"кампания {campaign}"))
            if not adjustments:
                errors.append(
                    _notice(5000, "Не задан обязательный параметр", "RetargetingAdjustments")
                )
            existing = {
                (m["CampaignId"], m["RetargetingConditionId"]) for m in adv.modifiers.values()
            }
            for adjustment in adjustments:
                condition = adjustment.get("RetargetingConditionId")
                errors += self._modifier_errors(adjustment.get("BidModifier"))
                if condition not in adv.lists:
                    errors.append(
                        _notice(8800, "Объект не найден", f"условие ретаргетинга {condition}")
                    )
                elif (campaign, condition) in existing:
                    errors.append(
                        _notice(
                            9802, "Объект уже существует", f"корректировка на {condition} уже есть"
                        )
                    )
            if errors:
                results.append({"Errors": errors})
                continue
            ids = []
            for adjustment in adjustments:
                mid = next(self._ids)
                adv.modifiers[mid] = {
                    "CampaignId": campaign,
                    "RetargetingConditionId": adjustment["RetargetingConditionId"],
                    "BidModifier": adjustment["BidModifier"],
                }
                ids.append(mid)
            results.append({"Ids": ids})
        return {"AddResults": results}

    def _bidmodifiers_set(self, adv: Advertiser, params: dict) -> dict:
        items = params["BidModifiers"]
        if len(items) > MAX_SET_ITEMS:
            raise DirectFault(9300, "Превышено ограничение", "не более 1000 элементов в set")
        results = []
        for item in items:
            mid = item.get("Id")
            errors = self._modifier_errors(item.get("BidModifier"))
            if mid not in adv.modifiers:
                errors.append(_notice(8800, "Объект не найден", f"корректировка {mid}"))
            if errors:
                results.append({"Id": mid, "Errors": errors})
                continue
            adv.modifiers[mid]["BidModifier"] = item["BidModifier"]
            results.append({"Id": mid})
        return {"SetResults": results}

    def _bidmodifiers_delete(self, adv: Advertiser, params: dict) -> dict:
        results = []
        for mid in params["SelectionCriteria"]["Ids"]:
            if adv.modifiers.pop(mid, None) is None:
                results.append({"Id": mid, "Errors": [_notice(8800, "Объект не найден", str(mid))]})
            else:
                results.append({"Id": mid})
        return {"DeleteResults": results}

    # --- retargetinglists --------------------------------------------------------------------

    def _retargetinglists_get(self, adv: Advertiser, params: dict) -> dict:
        fields = params.get("FieldNames")
        if not fields:
            raise DirectFault(8000, "Неверный запрос", "FieldNames обязателен")
        criteria = params.get("SelectionCriteria") or {}
        types = set(criteria.get("Types") or ["RETARGETING", "AUDIENCE"])
        ids = criteria.get("Ids")
        out = [
            {k: v for k, v in item.items() if k in fields}
            for lid, item in sorted(adv.lists.items())
            if item["Type"] in types and (not ids or lid in ids)
        ]
        return {"RetargetingLists": out}

    def _retargetinglists_add(self, adv: Advertiser, params: dict) -> dict:
        results = []
        for item in params["RetargetingLists"]:
            errors = []
            rules = item.get("Rules")
            if not (item.get("Name") or "").strip():
                errors.append(_notice(5000, "Не задан обязательный параметр", "Name"))
            if not isinstance(rules, list) or not rules:
                errors.append(_notice(5000, "Не задан обязательный параметр", "Rules"))
                rules = []
            for rule in rules:
                arguments = rule.get("Arguments") or []
                if rule.get("Operator") not in ("ALL", "ANY", "NONE") or not arguments:
                    errors.append(_notice(5005, "Поле задано неверно", "Operator/Arguments"))
                for argument in arguments:
                    external = argument.get("ExternalId")
                    if item.get("Type") == "AUDIENCE" and external not in adv.segments:
                        errors.append(_notice(8800, "Объект не найден", f"сегмент {external}"))
            if errors:
                results.append({"Errors": errors})
                continue
            lid = next(self._ids)
            adv.lists[lid] = {
                "Id": lid,
                "Type": item.get("Type") or "RETARGETING",
                "Name": item["Name"],
                "Rules": rules,
            }
            results.append({"Id": lid})
        return {"AddResults": results}

    # --- reports -------------------------------------------------------------------------------

    def _report(self, request: Request, adv: Advertiser) -> Response:
        body = read_json(request)
        spec = body.get("params") if isinstance(body, dict) else None
        if not isinstance(spec, dict):
            raise DirectFault(8000, "Неверный запрос", "нужен объект {params}")
        criteria = spec.get("SelectionCriteria") or {}
        fields = spec.get("FieldNames") or []
        name = spec.get("ReportName")
        problems = []
        if not name:
            problems.append("ReportName")
        if spec.get("ReportType") != "CAMPAIGN_PERFORMANCE_REPORT":
            problems.append("ReportType")
        if (
            spec.get("DateRangeType") != "CUSTOM_DATE"
            or not criteria.get("DateFrom")
            or not (criteria.get("DateTo"))
        ):
            problems.append("DateRangeType/DateFrom/DateTo")
        if spec.get("Format") != "TSV":
            problems.append("Format")
        if spec.get("IncludeVAT") not in ("YES", "NO"):
            problems.append("IncludeVAT")
        if not fields or set(fields) - REPORT_FIELDS:
            problems.append("FieldNames")
        if problems:
            raise DirectFault(8000, "Неверный запрос", "неверно: " + ", ".join(problems))
        mode = request.headers.get("processingMode", "auto")
        with self._lock:
            seen = adv.reports.get(name, 0)
            if mode != "online" and seen < self.report_polls:
                adv.reports[name] = seen + 1
                status = 201 if seen == 0 else 202
                return Response(
                    "",
                    status=status,
                    headers={"retryIn": str(self.retry_in), "reportsInQueue": "1"},
                )
            adv.reports.pop(name, None)
            rows = sorted(
                (day, cid, stat)
                for (day, cid), stat in adv.stats.items()
                if criteria["DateFrom"] <= day <= criteria["DateTo"]
            )
        micros = request.headers.get("returnMoneyInMicros", "true").lower() != "false"
        lines = []
        if request.headers.get("skipReportHeader", "").lower() != "true":
            lines.append(f'"{name} ({criteria["DateFrom"]} - {criteria["DateTo"]})"')
        if request.headers.get("skipColumnHeader", "").lower() != "true":
            lines.append("\t".join(fields))
        for day, cid, stat in rows:
            cost = stat["Cost"]
            values = {
                "Date": day,
                "CampaignId": str(cid),
                "CampaignName": stat["CampaignName"],
                "Impressions": str(stat["Impressions"]),
                "Clicks": str(stat["Clicks"]),
                "Cost": str(int(cost * 1_000_000)) if micros else f"{cost:.2f}",
            }
            lines.append("\t".join(values[f] for f in fields))
        if request.headers.get("skipReportSummary", "").lower() != "true":
            lines.append(f"Total rows: {len(rows)}")
        return Response("\n".join(lines) + "\n", status=200, mimetype="text/tab-separated-values")
