"""Loopback stub of the Roistat analytics API (base ``.../api/v1/``).

What it checks, as Roistat does (reference: channels-and-integrations.md):

- ``Api-key`` header among ``api_keys`` and ``?project=`` among ``projects``; a wrong key or
  project is refused with HTTP 200 and ``{"status": "error", "error": "authentication_failed"
  | "access_denied"}`` (Roistat answers many errors with 200: the body tells);
- ``POST project/analytics/data``: a JSON object with ``dimensions`` (only ``marker_level_1``
  here), ``metrics`` (a subset of visits, leads, sales, revenue, marketing_cost) and ``period``
  with ``from`` and ``to`` as ISO 8601 times with an offset, ``from`` <= ``to``; anything else
  is ``{"status": "error", "error": "incorrect_request"}`` (HTTP 200);
- at most ``requests_per_minute`` (20) calls a minute: 429 with ``Retry-After``.

The reply aggregates the days of ``data`` (``stub.days[date] = [{"channel", "title", "visits",
"leads", "sales", "revenue", "marketing_cost"}]``) that fall into the period:
``{"data": [{"dateFrom", "dateTo", "items": [{"dimensions": {"marker_level_1": {"value",
"title"}}, "metrics": [{"metric_name", "value"}]}]}], "status": "success"}``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubReply, StubServer, json_response, read_json

API_KEY = "test-roistat-key"
PROJECT = "12345"
METRICS = ("visits", "leads", "sales", "revenue", "marketing_cost")


class RoistatStub(StubServer):
    prefix = "/api/v1/"

    def __init__(
        self,
        *,
        api_keys: set[str] | frozenset[str] = frozenset({API_KEY}),
        projects: set[str] | frozenset[str] = frozenset({PROJECT}),
        requests_per_minute: int = 20,
        **options: Any,
    ) -> None:
        options.setdefault("quota_per_minute", requests_per_minute)
        super().__init__(**options)
        self.api_keys = set(api_keys)
        self.projects = set(projects)
        self.days: dict[dt.date, list[dict[str, Any]]] = {}

    @property
    def credentials(self) -> dict[str, str]:
        return {"api_key": sorted(self.api_keys)[0]}

    @property
    def project(self) -> str:
        return sorted(self.projects)[0]

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"status": "error", "error": code, "message": message}

    def code_for_status(self, status: int) -> str:
        return {429: "request_limit_error", 404: "not_found"}.get(status, "internal_error")

    def _fail(self, code: str, message: str) -> StubReply:
        return StubReply(200, self.error_body(200, code, message))

    def handle(self, request: Request) -> Response:
        path = request.path[len(self.prefix) :] if request.path.startswith(self.prefix) else ""
        if path != "project/analytics/data" or request.method != "POST":
            raise StubReply(404, self.error_body(404, "not_found", "no such method"))
        if request.headers.get("Api-key") not in self.api_keys:
            raise self._fail("authentication_failed", "Invalid api key")
        if request.args.get("project") not in self.projects:
            raise self._fail("access_denied", "No access to the project")
        self._take_quota()
        body = read_json(request)
        if not isinstance(body, dict):
            raise self._fail("incorrect_request", "JSON body expected")
        if body.get("dimensions") != ["marker_level_1"]:
            raise self._fail("incorrect_request", "dimensions: only marker_level_1 is supported")
        metrics = body.get("metrics")
        if not isinstance(metrics, list) or not metrics or set(metrics) - set(METRICS):
            raise self._fail("incorrect_request", f"metrics: a subset of {', '.join(METRICS)}")
        period = body.get("period")
        try:
            start = dt.datetime.fromisoformat(period["from"])
            end = dt.datetime.fromisoformat(period["to"])
        except (TypeError, KeyError, ValueError):
            raise self._fail("incorrect_request", "period: from and to in ISO 8601") from None
        if start.tzinfo is None or end.tzinfo is None or start > end:
            raise self._fail("incorrect_request", "period: times with an offset, from <= to")
        totals: dict[str, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(METRICS, 0))
        titles: dict[str, str] = {}
        with self._lock:
            for day, rows in self.days.items():
                if start.date() <= day <= end.date():
                    for row in rows:
                        titles[row["channel"]] = row.get("title", row["channel"])
                        for name in METRICS:
                            totals[row["channel"]][name] += row.get(name, 0)
        items = [
            {
                "dimensions": {"marker_level_1": {"value": channel, "title": titles[channel]}},
                "metrics": [{"metric_name": name, "value": values[name]} for name in metrics],
            }
            for channel, values in totals.items()
        ]
        return json_response(
            {
                "data": [{"dateFrom": period["from"], "dateTo": period["to"], "items": items}],
                "status": "success",
            }
        )
