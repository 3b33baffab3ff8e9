"""Sendsay (https://api.sendsay.ru/general/api/v100/json/{ACCOUNT}): ``issue.send`` to one
address.

Facts in ../shared/reference/channels-and-integrations.md (third-party code): ``POST`` of a JSON
body holding ``"action"`` and ``"apikey"``; a reply holding ``REDIRECT`` must be sent again to that
path (at most 10 times); errors in a top-level ``errors[]`` of ``{"id", "explain"}``.
``issue.send``: ``{"action": "issue.send", "letter": {"subject", "from.email", "message":
{"html"}}, "group": "personal", "email": ..., "sendwhen": "now"}``; the reply names the
delivery's ``track.id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..http import (
    MAX_MESSAGE_CHARS,
    PlatformError,
    PlatformHttp,
    base_url_setting,
    error_text,
    unparsed_error,
)
from ..messaging import OutgoingMessage, SendResult, send_each

DEFAULT_BASE_URL = "https://api.sendsay.ru/general/api/v100/json/"
MAX_REDIRECTS = 10
# Error ids that refuse the whole account: every message of the batch fails with this text.
REQUEST_ERROR_PREFIXES = ("error/auth", "error/login", "error/apikey", "error/account")
# Error ids that refuse for now (the message may be sent again later).
RETRY_ERROR_MARKS = ("too_many", "toomany", "temporar", "unavailable", "try_later")


def _errors(body: Any) -> tuple[str, str]:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return "", ""
    parts, first_id = [], ""
    for error in errors[:5]:
        if not isinstance(error, dict):
            continue
        error_id = error_text(error.get("id"))
        first_id = first_id or error_id
        explain = error_text(error.get("explain"))
        parts.append(f"{error_id}: {explain}" if explain else error_id)
    return first_id or "error", "; ".join(p for p in parts if p)[:MAX_MESSAGE_CHARS]


def sendsay_error(response: httpx.Response) -> tuple[str, str]:
    """``(first error id, "id: explain; ...")`` from Sendsay's ``errors[]``; any other body is
    ``HTTP <status>`` (:func:`~integrations.http.unparsed_error`), never its text."""
    try:
        body = response.json()
    except ValueError:
        return unparsed_error(response)
    code, message = _errors(body)
    return (code, message) if message else unparsed_error(response)


def base_url() -> str:
    """``SENDSAY_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("SENDSAY_BASE_URL", DEFAULT_BASE_URL)


class SendsayClient:
    """Email through Sendsay's ``issue.send`` (``group: personal``), one request per message.

    ``credentials`` (what the client company enters): ``account`` (the Sendsay account login,
    the last part of the API path) and ``api_key``. ``from_email``/``from_name``: the sender,
    unless a message gives its own. A ``REDIRECT`` reply is followed to its path on the same
    host only (never to another host), at most 10 times. Not idempotent (no key): a timeout
    leaves that message unknown, never resent."""

    channel = "email"
    max_batch = 50
    idempotent = False

    def __init__(
        self,
        credentials: dict[str, Any],
        *,
        from_email: str = "",
        from_name: str = "",
        base_url: str | None = None,
        **http_options: Any,
    ) -> None:
        self.account = str(credentials.get("account") or "").strip("/")
        self.api_key = str(credentials.get("api_key") or "")
        if not self.account or not self.api_key or "/" in self.account:
            raise ValueError("Sendsay: нужны account и api_key")
        self.from_email = from_email
        self.from_name = from_name
        self.http = PlatformHttp(
            base_url or base_url_setting("SENDSAY_BASE_URL", DEFAULT_BASE_URL),
            error_parser=sendsay_error,
            **http_options,
        )
        self.path = self.account

    def close(self) -> None:
        self.http.close()

    def call(self, action: str, *, creates: bool = False, **fields: Any) -> dict[str, Any]:
        """One API action; follows ``REDIRECT`` and raises on ``errors[]``."""
        body = {"action": action, "apikey": self.api_key, **fields}
        for _ in range(MAX_REDIRECTS + 1):
            reply = self.http.request("POST", self.path, json=body, creates=creates).json()
            redirect = reply.get("REDIRECT") if isinstance(reply, dict) else None
            if not redirect:
                code, message = _errors(reply)
                if message:
                    raise PlatformError(message, status=200, code=code, body=reply)
                if not isinstance(reply, dict):
                    raise PlatformError("непонятный ответ Sendsay", status=200)
                return reply
            self.path = self._redirect_path(str(redirect))
        raise PlatformError(f"Sendsay: больше {MAX_REDIRECTS} перенаправлений (REDIRECT)")

    def _redirect_path(self, redirect: str) -> str:
        """A REDIRECT's path relative to the base URL: only its path is used, so a reply can
        never send the worker to another host."""
        base_path = self.http.client.base_url.path
        path = urlsplit(redirect).path
        if path.startswith(base_path):
            path = path[len(base_path) :]
        path = path.strip("/")
        if not path or ".." in path.split("/"):
            raise PlatformError(f"Sendsay: непонятное перенаправление {redirect[:100]!r}")
        return path

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return send_each(messages, self._send_one)

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        letter: dict[str, Any] = {
            "subject": message.subject,
            "from.email": message.from_email or self.from_email,
            "message": {"html": message.body},
        }
        from_name = message.from_name or self.from_name
        if from_name:
            letter["from.name"] = from_name
        if message.text:
            letter["message"]["text"] = message.text
        try:
            reply = self.call(
                "issue.send",
                creates=True,
                letter=letter,
                group="personal",
                email=message.to,
                sendwhen="now",
            )
        except PlatformError as exc:
            if type(exc) is not PlatformError or exc.status != 200:
                raise  # HTTP errors, unavailable, outcome unknown
            if exc.code.startswith(REQUEST_ERROR_PREFIXES):
                raise
            retry = any(mark in exc.code for mark in RETRY_ERROR_MARKS)
            return SendResult(
                key=message.key, status="retry" if retry else "failed", error=exc.message
            )
        track = reply.get("track.id", "")
        return SendResult(key=message.key, status="accepted", provider_id=str(track))
