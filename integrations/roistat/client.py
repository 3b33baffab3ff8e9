"""Roistat analytics API client (https://cloud.roistat.com/api/v1/).

Facts in ../shared/reference/channels-and-integrations.md: ``Api-key: KEY`` header and
``?project=ID`` on every call (documented); ``POST project/analytics/data`` with
``{"dimensions": ["marker_level_1"], "metrics": [...], "period": {"from", "to"}}``. The reply
aggregates over the whole period (third-party clients read ``data[0].items[]``, each with
``dimensions.marker_level_1.value`` and ``metrics[] = {"metric_name", "value"}``), so a day's
rows are read with a period of that one day: :meth:`RoistatClient.analytics_day` asks one day
per request (an import of yesterday and the day before is two requests, far below the limit of
20 requests a minute). Errors may come with HTTP 200 and ``"status": "error"`` (3p): the body is
checked, not only the status code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from ..http import PlatformError, PlatformHttp, base_url_setting, error_text, unparsed_error

DEFAULT_BASE_URL = "https://cloud.roistat.com/api/v1/"
METRICS = ("visits", "leads", "sales", "revenue", "marketing_cost")
DIMENSION = "marker_level_1"
# Error codes of a 200 reply that mean "try again later" (the request limit).
RETRY_ERRORS = frozenset({"request_limit_error", "too_many_requests"})


def roistat_error(response: httpx.Response) -> tuple[str, str]:
    """``(error, message)`` from Roistat's error body ``{"status": "error", "error",
    "message"?}``; any other body is ``HTTP <status>``."""
    try:
        body = response.json()
    except ValueError:
        return unparsed_error(response)
    if isinstance(body, dict) and body.get("status") == "error":
        code = error_text(body.get("error")) or "error"
        return code[:50], error_text(body.get("message")) or code
    return unparsed_error(response)


@dataclass(frozen=True)
class RoistatRow:
    """One channel (first-level marker) of one day."""

    day: dt.date
    channel: str
    title: str
    visits: int
    leads: int
    sales: int
    revenue: Decimal
    cost: Decimal


def _number(value: Any) -> Decimal:
    try:
        number = Decimal(str(value if value is not None else 0))
    except InvalidOperation:
        return Decimal(0)
    return number if number.is_finite() else Decimal(0)


class RoistatClient:
    """``credentials``: ``{"api_key"}``; ``project``: the project id (``AdAccount.remote_id``)."""

    def __init__(
        self,
        credentials: dict[str, Any],
        *,
        project: str,
        base_url: str | None = None,
        **http_options: Any,
    ) -> None:
        api_key = str(credentials.get("api_key") or "")
        if not api_key:
            raise ValueError("Roistat: нужен api_key")
        if not str(project or "").strip():
            raise ValueError("Roistat: нужен номер проекта")
        self.project = str(project).strip()
        self.http = PlatformHttp(
            base_url or base_url_setting("ROISTAT_BASE_URL", DEFAULT_BASE_URL),
            error_parser=roistat_error,
            headers={"Api-key": api_key},
            **http_options,
        )

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.http.max_attempts):
            reply = self.http.request("POST", path, params={"project": self.project}, json=body)
            try:
                data = reply.json()
            except ValueError as exc:
                raise PlatformError("непонятный ответ Roistat", status=reply.status_code) from exc
            if not isinstance(data, dict):
                raise PlatformError("непонятный ответ Roistat", status=reply.status_code)
            if data.get("status") != "error":
                return data
            code, message = roistat_error(reply)
            if code not in RETRY_ERRORS or attempt + 1 == self.http.max_attempts:
                raise PlatformError(message, status=reply.status_code, code=code, body=data)
            self.http._pause(attempt, reply)
        raise AssertionError("unreachable")  # pragma: no cover

    def analytics_day(self, day: dt.date, *, tz: dt.tzinfo = dt.UTC) -> list[RoistatRow]:
        """Spend, visits, leads, sales and revenue per channel of ``day`` (in ``tz``)."""
        start = dt.datetime.combine(day, dt.time(0, 0), tzinfo=tz)
        end = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=tz)
        body = {
            "dimensions": [DIMENSION],
            "metrics": list(METRICS),
            "period": {"from": start.isoformat(), "to": end.isoformat()},
        }
        data = self._post("project/analytics/data", body)
        rows: list[RoistatRow] = []
        for block in data.get("data") or []:
            if not isinstance(block, dict):
                continue
            for item in block.get("items") or []:
                if not isinstance(item, dict):
                    continue
                marker = (item.get("dimensions") or {}).get(DIMENSION) or {}
                channel = str(marker.get("value") or "").strip()[:200]
                if not channel:
                    continue
                metrics = {
                    str(m.get("metric_name")): m.get("value")
                    for m in item.get("metrics") or []
                    if isinstance(m, dict)
                }
                rows.append(
                    RoistatRow(
                        day=day,
                        channel=channel,
                        title=str(marker.get("title") or "")[:300],
                        visits=int(_number(metrics.get("visits"))),
                        leads=int(_number(metrics.get("leads"))),
                        sales=int(_number(metrics.get("sales"))),
                        revenue=_number(metrics.get("revenue")).quantize(Decimal("0.01")),
                        cost=_number(metrics.get("marketing_cost")).quantize(Decimal("0.01")),
                    )
                )
        return rows


def base_url() -> str:
    """``ROISTAT_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("ROISTAT_BASE_URL", DEFAULT_BASE_URL)
