"""Loopback stub of the Calltouch calls diary (``GET calls-service/RestAPI/{siteId}/
calls-diary/calls``).

What it checks, as Calltouch does (reference: channels-and-integrations.md, documented):

- the site id in the path among ``sites`` (else 404) and ``clientApiId`` that site's token
  (else 401 ``{"message": "Invalid clientApiId"}``: the error body's shape is not documented);
- ``dateFrom`` and ``dateTo`` as ``dd/mm/yyyy`` (else 400), from <= to, at most 31 days apart.

Calls are kept in ``stub.calls`` (dicts with Calltouch's field names; ``stub.add_call(...)``
fills the defaults) and answered as a JSON array of those whose day is in the range.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubServer, json_response

SITE_ID = "54321"
CLIENT_API_ID = "test-calltouch-client-api-id"
_PATH = re.compile(r"/calls-service/RestAPI/([^/]+)/calls-diary/calls")
_DATE = re.compile(r"\d{2}/\d{2}/\d{4}")


class CalltouchStub(StubServer):
    prefix = "/"

    def __init__(self, *, sites: dict[str, str] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.sites = dict(sites or {SITE_ID: CLIENT_API_ID})
        self.calls: list[dict[str, Any]] = []

    @property
    def credentials(self) -> dict[str, str]:
        return {"client_api_id": self.sites[self.site_id]}

    @property
    def site_id(self) -> str:
        return sorted(self.sites)[0]

    def add_call(
        self, *, call_id: int, phone: str, at: dt.datetime, **fields: Any
    ) -> dict[str, Any]:
        call = {
            "callId": call_id,
            "callerNumber": phone,
            "date": at.strftime("%d/%m/%Y %H:%M:%S"),
            "timestamp": int(at.timestamp()),
            "duration": 60,
            "successful": True,
            "source": "yandex",
            "medium": "cpc",
            "utmSource": "yandex",
            "utmMedium": "cpc",
            "utmCampaign": "brand",
            **fields,
        }
        with self._lock:
            self.calls.append(call)
        return call

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"status": status, "message": message}

    def code_for_status(self, status: int) -> str:
        return str(status)

    def handle(self, request: Request) -> Response:
        match = _PATH.fullmatch(request.path)
        if match is None or request.method != "GET":
            raise self.error(404, "404", "Not found")
        site = match.group(1)
        if site not in self.sites:
            raise self.error(404, "404", "Site not found")
        if request.args.get("clientApiId") != self.sites[site]:
            raise self.error(401, "401", "Invalid clientApiId")
        dates = []
        for name in ("dateFrom", "dateTo"):
            value = request.args.get(name, "")
            try:
                if not _DATE.fullmatch(value):
                    raise ValueError
                dates.append(dt.datetime.strptime(value, "%d/%m/%Y").date())  # noqa: DTZ007
            except ValueError:
                raise self.error(400, "400", f"{name}: dd/mm/yyyy expected") from None
        start, end = dates
        if start > end or (end - start).days > 31:
            raise self.error(400, "400", "dateFrom <= dateTo, at most 31 days")
        with self._lock:
            found = [
                call
                for call in self.calls
                if start
                <= dt.datetime.strptime(call["date"], "%d/%m/%Y %H:%M:%S").date()  # noqa: DTZ007
                <= end
            ]
        return json_response(found)
