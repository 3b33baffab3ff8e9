"""Loopback stub of the Bitrix24 REST API as a portal's inbound webhooks serve it.

What it checks, as the real API does:

- Path ``/rest/<user_id>/<token>/<method>`` with an optional ``.json`` transport suffix; a
  user id and token that are not one of the portal's webhooks -> 401 ``INVALID_CREDENTIALS``
  ("Invalid request credentials"); a webhook without the ``crm`` scope -> 403
  ``insufficient_scope``; a method it does not know -> 404 ``ERROR_METHOD_NOT_FOUND``.
- Parameters from the query string, a form body or a JSON body; GET and POST both work.
- ``crm.contact.get`` / ``crm.deal.get``: ``id`` required and a positive integer, else 400 with
  an empty ``error`` and "ID is not defined or invalid."; an unknown id -> 400 "Not found".
- Replies ``{"result": {...}, "time": {...}}``; errors ``{"error": "<CODE>",
  "error_description": "<text>"}``; faults 503 ``QUERY_LIMIT_EXCEEDED`` ("Too many requests").
"""

from __future__ import annotations

import re
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubServer, json_response, read_json

ERROR_CODES = {
    400: "INVALID_REQUEST",
    401: "INVALID_CREDENTIALS",
    403: "ACCESS_DENIED",
    404: "ERROR_METHOD_NOT_FOUND",
    405: "ERROR_METHOD_NOT_FOUND",
    413: "INVALID_REQUEST",
    429: "QUERY_LIMIT_EXCEEDED",
    500: "INTERNAL_SERVER_ERROR",
    503: "QUERY_LIMIT_EXCEEDED",
}
_PATH = re.compile(r"/rest/(?P<user_id>\d+)/(?P<token>[^/]+)/(?P<method>[a-z0-9_.]+?)(?:\.json)?/?")
ENTITY_METHODS = {"crm.contact.get": "contacts", "crm.deal.get": "deals"}


class Bitrix24Stub(StubServer):
    """``webhooks``: {(user_id, token): scopes}; ``contacts`` and ``deals``: {id: fields} as
    crm.contact.get / crm.deal.get return them (fields are served as given, ``ID`` added)."""

    prefix = "/rest/"

    def __init__(
        self,
        *,
        webhooks: dict[tuple[str, str], set[str]] | None = None,
        contacts: dict[int, dict[str, Any]] | None = None,
        deals: dict[int, dict[str, Any]] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.webhooks = webhooks if webhooks is not None else {("1", "testtoken123"): {"crm"}}
        self.contacts = dict(contacts or {})
        self.deals = dict(deals or {})
        self.calls_made: list[dict[str, Any]] = []

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"error": code, "error_description": message}

    def code_for_status(self, status: int) -> str:
        return ERROR_CODES.get(status, "INTERNAL_SERVER_ERROR")

    @staticmethod
    def _params(request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.args.items())
        if request.method == "POST":
            if request.mimetype == "application/json":
                body = read_json(request)
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update(request.form.items())
        return params

    def handle(self, request: Request) -> Response:
        started = time.monotonic()
        match = _PATH.fullmatch(request.path)
        if match is None:
            raise self.error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        if request.method not in ("GET", "POST"):
            raise self.error(405, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        scopes = self.webhooks.get((match["user_id"], match["token"]))
        if scopes is None:
            raise self.error(401, "INVALID_CREDENTIALS", "Invalid request credentials")
        method = match["method"]
        if method not in ENTITY_METHODS:
            raise self.error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        if "crm" not in scopes:
            raise self.error(
                403, "insufficient_scope", "The request requires higher privileges than provided."
            )
        params = self._params(request)
        with self._lock:
            self.calls_made.append({"method": method, "params": params})
        raw_id = str(params.get("id", params.get("ID", ""))).strip()
        if not raw_id.isdigit() or int(raw_id) <= 0:
            raise self.error(400, "", "ID is not defined or invalid.")
        with self._lock:
            entity = getattr(self, ENTITY_METHODS[method]).get(int(raw_id))
        if entity is None:
            raise self.error(400, "", "Not found")
        now = time.time()
        return json_response(
            {
                "result": {**entity, "ID": raw_id},
                "time": {
                    "start": started,
                    "finish": now,
                    "duration": round(time.monotonic() - started, 6),
                },
            }
        )

    def methods_called(self) -> list[tuple[str, str]]:
        """(method, id) of every call that reached a method."""
        with self._lock:
            return [(c["method"], str(c["params"].get("id", ""))) for c in self.calls_made]
