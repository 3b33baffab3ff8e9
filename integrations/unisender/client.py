"""UniSender transactional email (``sendEmail``, https://api.unisender.com/ru/api/).

Facts in ../shared/reference/channels-and-integrations.md: ``{base}{method}?format=json&api_key=``,
parameters by GET or POST, never both in one call (so everything, ``format`` and ``api_key``
included, goes in the POST body); ``sendEmail`` takes one recipient (``email``), ``sender_name``,
``sender_email``, ``subject``, ``body`` (HTML, at most 1 MB) and ``list_id``; at least 60 s
between two sends to one address. Errors come with HTTP 200 as ``{"error": "...", "code": "..."}``.
The shape of a success is not documented precisely: ``{"result": [{"index", "email", "id"}]}``
(with ``error_checking=1`` an entry may carry ``errors: [{"code", "message"}]`` instead) and the
older ``{"result": {"email_id"}}`` are both read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from ..http import PlatformError, PlatformHttp, base_url_setting, error_text, unparsed_error
from ..messaging import OutgoingMessage, SendResult, send_each

DEFAULT_BASE_URL = "https://api.unisender.com/ru/api/"
MAX_BODY_BYTES = 1_000_000
# Refused for now: the message may be sent again later.
RETRY_CODES = frozenset({"retry_later", "api_call_limit_exceeded_for_api_key"})
# Refused for the whole account: every message of the batch fails with this text.
REQUEST_CODES = frozenset({"invalid_api_key", "not_enough_money", "access_denied"})


def unisender_error(response: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` from UniSender's ``{"error", "code"}``; any other body is ``HTTP
    <status>`` (:func:`~integrations.http.unparsed_error`), never its text."""
    try:
        body = response.json()
    except ValueError:
        return unparsed_error(response)
    if isinstance(body, dict):
        message = error_text(body.get("error"))
        if message:
            return error_text(body.get("code")) or "error", message
    return unparsed_error(response)


def base_url() -> str:
    """``UNISENDER_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("UNISENDER_BASE_URL", DEFAULT_BASE_URL)


class UniSenderClient:
    """Email through UniSender's ``sendEmail``, one request per message.

    ``credentials`` (what the client company enters): ``api_key`` (the account's API key) and
    ``list_id`` (the id of a contact list in that account, which ``sendEmail`` requires).
    ``from_email``/``from_name``: the sender, unless a message gives its own (the sender
    address must be confirmed in the UniSender account). UniSender takes no custom headers in
    ``sendEmail``: it adds its own unsubscribe header, and our unsubscribe link stays in the
    body. Not idempotent (no key): a timeout leaves that message unknown, never resent."""

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
        self.api_key = str(credentials.get("api_key") or "")
        self.list_id = str(credentials.get("list_id") or "")
        if not self.api_key or not self.list_id:
            raise ValueError("UniSender: нужны api_key и list_id")
        self.from_email = from_email
        self.from_name = from_name
        self.http = PlatformHttp(
            base_url or base_url_setting("UNISENDER_BASE_URL", DEFAULT_BASE_URL),
            error_parser=unisender_error,
            **http_options,
        )

    def close(self) -> None:
        self.http.close()

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return send_each(messages, self._send_one)

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        if len(message.body.encode()) > MAX_BODY_BYTES:
            return SendResult(key=message.key, status="failed", error="письмо больше 1 МБ")
        sender_email = message.from_email or self.from_email
        data = {
            "format": "json",
            "api_key": self.api_key,
            "email": message.to,
            # Required by UniSender: the address stands in for a missing name.
            "sender_name": message.from_name or self.from_name or sender_email,
            "sender_email": sender_email,
            "subject": message.subject,
            "body": message.body,
            "list_id": self.list_id,
            "error_checking": "1",
        }
        body = self.http.request("POST", "sendEmail", data=data, creates=True).json()
        return self.read_reply(message.key, body)

    @staticmethod
    def read_reply(key: str, body: Any) -> SendResult:
        """One message's result from a ``sendEmail`` reply; the account-level codes raise."""
        if not isinstance(body, dict):
            return SendResult(key=key, status="failed", error="непонятный ответ UniSender")
        error = error_text(body.get("error"))
        if error:
            code = error_text(body.get("code"))
            if code in REQUEST_CODES:
                raise PlatformError(error, status=200, code=code, body=body)
            status = "retry" if code in RETRY_CODES else "failed"
            return SendResult(key=key, status=status, error=f"{code}: {error}" if code else error)
        result = body.get("result")
        if isinstance(result, list) and result and isinstance(result[0], dict):
            entry = result[0]
            errors = entry.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                code = error_text(errors[0].get("code"))
                text = error_text(errors[0].get("message")) or code
                status = "retry" if code in RETRY_CODES else "failed"
                return SendResult(key=key, status=status, error=text)
            return SendResult(key=key, status="accepted", provider_id=str(entry.get("id", "")))
        if isinstance(result, dict) and result.get("email_id"):
            return SendResult(key=key, status="accepted", provider_id=str(result["email_id"]))
        return SendResult(key=key, status="failed", error="непонятный ответ UniSender")
