"""Loopback stub of RuStore push (base ``/v1/``, ``POST projects/{project_id}/messages:send``).

What it checks, as the service does (reference: channels-and-integrations.md, documented; the
error shape is FCM's):

- ``Authorization: Bearer <service token>`` of that project (``projects``: {project id: service
  token}); none -> 401 ``UNAUTHENTICATED``, another project's or an unknown token -> 403
  ``PERMISSION_DENIED``;
- a JSON body ``{"message": {"token", "notification": {"title", "body"}, "data", "android":
  {"ttl": "<seconds>s"}}}`` with a token and a notification or data (400
  ``INVALID_ARGUMENT``); data values must be strings;
- the device token: malformed (fewer than 16 of ``[A-Za-z0-9_:.-]``) -> 400 ``INVALID_ARGUMENT``
  "invalid token"; one revoked (``revoke``) or, with ``accept_any_token=False``, one not
  registered (``register_device``) -> 404 ``NOT_FOUND``: the device is gone.

A success is 200 ``{}``.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubReply, json_response, read_json
from tests.stubs.channels import MessagingStub

PROJECT_ID, SERVICE_TOKEN = "test-project", "test-rustore-service-token"
_TOKEN = re.compile(r"[A-Za-z0-9_:.\-]{16,}")
_TTL = re.compile(r"[0-9]+s")
_PATH = re.compile(r"projects/([^/]+)/messages:send")
STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}


class RuStoreStub(MessagingStub):
    prefix = "/v1/"

    def __init__(
        self,
        *,
        projects: dict[str, str] | None = None,
        accept_any_token: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.projects = dict(projects or {PROJECT_ID: SERVICE_TOKEN})
        self.accept_any_token = accept_any_token
        self.devices: set[str] = set()
        self.revoked: set[str] = set()

    @property
    def credentials(self) -> dict[str, str]:
        project, token = next(iter(self.projects.items()))
        return {"project_id": project, "service_token": token}

    def register_device(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.devices.add(token)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self.revoked.add(token)

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"error": {"code": status, "message": message, "status": code}}

    def code_for_status(self, status: int) -> str:
        return {429: "RESOURCE_EXHAUSTED", 404: "NOT_FOUND"}.get(
            status, "UNAVAILABLE" if status >= 500 else "INVALID_ARGUMENT"
        )

    def _fail(self, status: int, message: str, code: str = "") -> StubReply:
        return self.error(status, code or STATUSES.get(status, "INVALID_ARGUMENT"), message)

    def handle(self, request: Request) -> Response:
        match = _PATH.fullmatch(request.path[len(self.prefix) :])
        if request.method != "POST" or match is None:
            raise self._fail(404, "Not found", "NOT_FOUND")
        project = match.group(1)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            raise self._fail(401, "Request is missing a valid service token")
        if self.projects.get(project) != token:
            raise self._fail(403, "The service token has no access to this project")
        body = read_json(request)
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            raise self._fail(400, 'JSON body {"message": {...}} is required')
        device = message.get("token")
        notification = message.get("notification")
        data = message.get("data")
        if not device:
            raise self._fail(400, "message.token is required")
        if not notification and not data:
            raise self._fail(400, "message.notification or message.data is required")
        if data is not None and (
            not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values())
        ):
            raise self._fail(400, "message.data values must be strings")
        ttl = (message.get("android") or {}).get("ttl")
        if ttl is not None and not _TTL.fullmatch(str(ttl)):
            raise self._fail(400, "android.ttl must be a duration such as '3600s'")
        if not isinstance(device, str) or not _TOKEN.fullmatch(device):
            raise self._fail(400, "invalid token")
        with self._lock:
            known = self.accept_any_token or device in self.devices
            if device in self.revoked or not known:
                raise self._fail(404, "The token is not registered or has expired", "NOT_FOUND")
            self._accept(
                to=device,
                text=(notification or {}).get("body", ""),
                title=(notification or {}).get("title", ""),
                data=data or {},
                project=project,
            )
        return json_response({})
