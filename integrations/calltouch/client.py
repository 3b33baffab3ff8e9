"""Calltouch calls diary client (https://api.calltouch.ru/).

Facts in ../shared/reference/channels-and-integrations.md (documented): ``GET
calls-service/RestAPI/{siteId}/calls-diary/calls?clientApiId=&dateFrom=dd/mm/yyyy&dateTo=
dd/mm/yyyy`` answers a JSON array of calls. Field names as Calltouch documents them:
``callId``, ``callerNumber``, ``timestamp`` (unix seconds; older replies carry ``date`` as
``dd/mm/yyyy HH:MM:SS`` in the site's zone), ``duration`` (seconds), ``successful``,
``source``, ``medium``, ``utmSource``, ``utmMedium``, ``utmCampaign``. A paged reply (``{"page",
"pageTotal", "records": [...]}``) is read too. The error body's shape is not documented (?):
``message``, ``error`` or ``errorMessage`` text is shown when present, else ``HTTP <status>``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..http import PlatformError, PlatformHttp, base_url_setting, error_text, unparsed_error

DEFAULT_BASE_URL = "https://api.calltouch.ru/"
DATE_FORMAT = "%d/%m/%Y"
MAX_PAGES = 100


def calltouch_error(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return unparsed_error(response)
    if isinstance(body, dict):
        for key in ("message", "errorMessage", "error"):
            text = error_text(body.get(key))
            if text:
                return str(body.get("code") or body.get("status") or response.status_code)[
                    :50
                ], text
    return unparsed_error(response)


@dataclass(frozen=True)
class Call:
    call_id: str
    caller_phone: str
    at: dt.datetime
    duration: int
    status: str  # "successful" | "unsuccessful"
    source: str = ""
    medium: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _text(value: Any, limit: int) -> str:
    return "" if value is None else str(value).strip()[:limit]


def parse_call(record: dict[str, Any], *, tz: dt.tzinfo) -> Call | None:
    """A call of the reply, or None when it has no id, no caller number or no time."""
    call_id = _text(record.get("callId"), 80)
    phone = _text(record.get("callerNumber"), 40)
    at = None
    stamp = record.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        at = dt.datetime.fromtimestamp(stamp, tz=dt.UTC)
    elif isinstance(record.get("date"), str):
        try:
            at = dt.datetime.strptime(record["date"], "%d/%m/%Y %H:%M:%S").replace(tzinfo=tz)
        except ValueError:
            at = None
    if not call_id or not phone or at is None:
        return None
    try:
        duration = max(int(record.get("duration") or 0), 0)
    except (TypeError, ValueError):
        duration = 0
    successful = record.get("successful")
    status = _text(record.get("status"), 30) or (
        "successful" if successful is True else "unsuccessful"
    )
    return Call(
        call_id=call_id,
        caller_phone=phone,
        at=at,
        duration=duration,
        status=status,
        source=_text(record.get("source"), 100),
        medium=_text(record.get("medium"), 100),
        utm_source=_text(record.get("utmSource"), 100),
        utm_medium=_text(record.get("utmMedium"), 100),
        utm_campaign=_text(record.get("utmCampaign"), 200),
        raw=record,
    )


class CalltouchClient:
    """``credentials``: ``{"client_api_id"}``; ``site_id``: ``AdAccount.remote_id``."""

    def __init__(
        self,
        credentials: dict[str, Any],
        *,
        site_id: str,
        base_url: str | None = None,
        **http_options: Any,
    ) -> None:
        self.client_api_id = str(credentials.get("client_api_id") or "")
        if not self.client_api_id:
            raise ValueError("Calltouch: нужен client_api_id")
        self.site_id = str(site_id or "").strip()
        if not self.site_id.isdigit():
            raise ValueError("Calltouch: номер сайта — число")
        self.http = PlatformHttp(
            base_url or base_url_setting("CALLTOUCH_BASE_URL", DEFAULT_BASE_URL),
            error_parser=calltouch_error,
            **http_options,
        )

    def close(self) -> None:
        self.http.close()

    def calls(
        self, date_from: dt.date, date_to: dt.date, *, tz: dt.tzinfo = dt.UTC
    ) -> tuple[list[Call], int]:
        """The calls of the days ``date_from``..``date_to`` (inclusive) and how many records
        of the reply could not be read (no id, number or time)."""
        path = f"calls-service/RestAPI/{self.site_id}/calls-diary/calls"
        params = {
            "clientApiId": self.client_api_id,
            "dateFrom": date_from.strftime(DATE_FORMAT),
            "dateTo": date_to.strftime(DATE_FORMAT),
        }
        calls: list[Call] = []
        unreadable = 0
        page = 1
        while True:
            body = self.http.request("GET", path, params=params).json()
            if isinstance(body, list):
                records, pages = body, 1
            elif isinstance(body, dict) and isinstance(body.get("records"), list):
                records = body["records"]
                pages = int(body.get("pageTotal") or 1)
            else:
                raise PlatformError("непонятный ответ Calltouch", status=200, body=body)
            for record in records:
                call = parse_call(record, tz=tz) if isinstance(record, dict) else None
                if call is None:
                    unreadable += 1
                else:
                    calls.append(call)
            if page >= min(pages, MAX_PAGES):
                return calls, unreadable
            page += 1
            params = {**params, "page": str(page)}


def base_url() -> str:
    """``CALLTOUCH_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("CALLTOUCH_BASE_URL", DEFAULT_BASE_URL)
