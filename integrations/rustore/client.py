"""RuStore push (https://vkpns.rustore.ru/v1/projects/{project_id}/messages:send).

Facts in ../shared/reference/channels-and-integrations.md (documented): ``Authorization: Bearer
{service token}``; body ``{"message": {"token", "notification": {"title", "body", "image"},
"data": {...}, "android": {"ttl": "3600s", "notification": {"click_action"}}}}`` (the FCM
shape), one device token a request. Errors in the FCM shape ``{"error": {"code", "message",
"status"}}``; a token that is unknown or expired (404 ``NOT_FOUND``/``UNREGISTERED``, or a 400
about the token) means the device is gone and must be unsubscribed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from ..http import (
    OutcomeUnknown,
    PlatformError,
    PlatformHttp,
    PlatformUnavailable,
    base_url_setting,
    error_text,
    unparsed_error,
)
from ..messaging import OutgoingMessage, SendResult, send_each

DEFAULT_BASE_URL = "https://vkpns.rustore.ru/v1/"
DEFAULT_TTL = "86400s"
GONE_STATUSES = frozenset({"NOT_FOUND", "UNREGISTERED"})
REQUEST_STATUSES = frozenset({401, 403})


def rustore_error(response: httpx.Response) -> tuple[str, str]:
    """``(status, message)`` from the FCM-shaped ``{"error": {"code", "message", "status"}}``;
    any other body is ``HTTP <status>`` (:func:`~integrations.http.unparsed_error`)."""
    try:
        body = response.json()
    except ValueError:
        return unparsed_error(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = error_text(error.get("message"))
        if message:
            return error_text(error.get("status")) or str(response.status_code), message
    return unparsed_error(response)


def base_url() -> str:
    """``RUSTORE_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("RUSTORE_BASE_URL", DEFAULT_BASE_URL)


def token_gone(error: PlatformError) -> bool:
    """Does this refusal say the device token itself is dead?"""
    if error.status == 404 or error.code in GONE_STATUSES:
        return True
    return error.status == 400 and "token" in error.message.lower()


class RuStorePushClient:
    """Push to Android devices through RuStore, one request per device token.

    ``credentials`` (what the client company enters, from the RuStore console): ``project_id``
    (the push project's id) and ``service_token`` (its service token). ``ttl``: how long
    RuStore keeps an undelivered push. A message's ``subject`` is the title, ``body`` the text,
    ``data`` the payload (``data["link"]`` also becomes the click action). A dead token fails
    that message with ``gone=True``; 401/403 (a wrong service token or project) refuse the
    whole batch. Not idempotent: a timeout leaves that message unknown, never resent."""

    channel = "push"
    max_batch = 100
    idempotent = False

    def __init__(
        self,
        credentials: dict[str, Any],
        *,
        ttl: str = DEFAULT_TTL,
        base_url: str | None = None,
        **http_options: Any,
    ) -> None:
        self.project_id = str(credentials.get("project_id") or "")
        token = str(credentials.get("service_token") or "")
        if not self.project_id or not token:
            raise ValueError("RuStore: нужны project_id и service_token")
        self.ttl = ttl
        self.http = PlatformHttp(
            base_url or base_url_setting("RUSTORE_BASE_URL", DEFAULT_BASE_URL),
            error_parser=rustore_error,
            headers={"Authorization": f"Bearer {token}"},
            **http_options,
        )
        self.path = f"projects/{quote(self.project_id, safe='')}/messages:send"

    def close(self) -> None:
        self.http.close()

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return send_each(messages, self._send_one)

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "token": message.to,
            "notification": {"title": message.subject, "body": message.body},
            "android": {"ttl": self.ttl},
        }
        if message.data:
            body["data"] = {str(k): str(v) for k, v in message.data.items()}
            if message.data.get("link"):
                body["android"]["notification"] = {"click_action": message.data["link"]}
        return {"message": body}

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        try:
            reply = self.http.request("POST", self.path, json=self.payload(message), creates=True)
        except (OutcomeUnknown, PlatformUnavailable):
            raise
        except PlatformError as exc:
            if exc.status in REQUEST_STATUSES:
                raise
            return SendResult(
                key=message.key, status="failed", error=exc.message, gone=token_gone(exc)
            )
        try:
            name = reply.json().get("name", "")
        except (ValueError, AttributeError):
            name = ""
        return SendResult(key=message.key, status="accepted", provider_id=str(name or ""))
