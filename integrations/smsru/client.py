"""SMS.ru (https://sms.ru/sms/send).

Facts in ../shared/reference/channels-and-integrations.md (documented): ``POST sms/send`` with
``api_id``, ``to`` (a comma list of at most 100 numbers) and ``msg``, or ``to[PHONE]=text`` per
number, and ``json=1``. The reply (HTTP 200) is ``{"status": "OK", "status_code": 100, "sms":
{"79251234567": {"status": "OK", "status_code": 100, "sms_id"} | {"status": "ERROR",
"status_code": 202, "status_text"}}, "balance"}``; a request-level error is ``{"status":
"ERROR", "status_code", "status_text"}``. Codes: 200 bad api_id, 201 no funds, 204 sender name not
approved (the whole account: raised), 202 bad recipient, 203 empty text, 205 longer than 8 SMS,
206 daily limit, 207 no route (that message fails), 220 temporarily unavailable (retry).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from ..http import PlatformError, PlatformHttp, base_url_setting, error_text, unparsed_error
from ..messaging import BatchOutcomeUnknown, OutgoingMessage, SendResult, send_groups

DEFAULT_BASE_URL = "https://sms.ru/"
MAX_NUMBERS = 100
REQUEST_CODES = frozenset({200, 201, 204})
RETRY_CODES = frozenset({220})


def smsru_error(response: httpx.Response) -> tuple[str, str]:
    """``(status_code, status_text)`` from an SMS.ru error body; any other body is ``HTTP
    <status>`` (:func:`~integrations.http.unparsed_error`), never its text."""
    try:
        body = response.json()
    except ValueError:
        return unparsed_error(response)
    if isinstance(body, dict) and body.get("status") == "ERROR":
        text = error_text(body.get("status_text"))
        if text:
            return str(body.get("status_code", ""))[:20], text
    return unparsed_error(response)


def base_url() -> str:
    """``SMSRU_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("SMSRU_BASE_URL", DEFAULT_BASE_URL)


def phone_digits(phone: str) -> str:
    """``+7 (925) 123-45-67`` -> ``79251234567``: the form SMS.ru keys its reply by."""
    return "".join(ch for ch in phone if ch.isdigit())


def _code(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def number_groups(messages: Sequence[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    """Requests of at most 100 messages with distinct numbers (the reply is keyed by number):
    a second message to a number goes to a later request of the batch."""
    groups: list[list[OutgoingMessage]] = []
    seen: list[set[str]] = []
    for message in messages:
        digits = phone_digits(message.to)
        for group, numbers in zip(groups, seen, strict=True):
            if len(group) < MAX_NUMBERS and digits not in numbers:
                group.append(message)
                numbers.add(digits)
                break
        else:
            groups.append([message])
            seen.append({digits})
    return groups


class SmsRuClient:
    """SMS through SMS.ru, up to 100 numbers a request.

    ``credentials`` (what the client company enters): ``api_id`` (the account's API key).
    ``sender``: the approved sender name (``from``), empty for the account's default. Messages
    of one text go as ``to`` + ``msg``; otherwise ``to[PHONE]=text``. One bad number fails only
    its message. Not idempotent (no key): a timeout leaves that request's messages unknown,
    never resent."""

    channel = "sms"
    max_batch = MAX_NUMBERS
    idempotent = False

    def __init__(
        self,
        credentials: dict[str, Any],
        *,
        sender: str = "",
        base_url: str | None = None,
        **http_options: Any,
    ) -> None:
        self.api_id = str(credentials.get("api_id") or "")
        if not self.api_id:
            raise ValueError("SMS.ru: нужен api_id")
        self.sender = sender
        self.http = PlatformHttp(
            base_url or base_url_setting("SMSRU_BASE_URL", DEFAULT_BASE_URL),
            error_parser=smsru_error,
            **http_options,
        )

    def close(self) -> None:
        self.http.close()

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        sendable, results = [], []
        for message in messages:
            if len(phone_digits(message.to)) < 10:
                results.append(SendResult(key=message.key, status="failed", error="неверный номер"))
            else:
                sendable.append(message)
        try:
            return results + send_groups(number_groups(sendable), self._send_group)
        except BatchOutcomeUnknown as exc:
            exc.results[:0] = results
            raise

    def _send_group(self, group: Sequence[OutgoingMessage]) -> list[SendResult]:
        data: dict[str, str] = {"api_id": self.api_id, "json": "1"}
        if self.sender:
            data["from"] = self.sender
        texts = {message.body for message in group}
        if len(texts) == 1:
            data["to"] = ",".join(phone_digits(m.to) for m in group)
            data["msg"] = group[0].body
        else:
            for message in group:
                data[f"to[{phone_digits(message.to)}]"] = message.body
        body = self.http.request("POST", "sms/send", data=data, creates=True).json()
        return self.read_reply(group, body)

    @staticmethod
    def read_reply(group: Sequence[OutgoingMessage], body: Any) -> list[SendResult]:
        if not isinstance(body, dict):
            raise PlatformError("непонятный ответ SMS.ru", status=200)
        if body.get("status") != "OK":
            code = _code(body.get("status_code"))
            text = error_text(body.get("status_text")) or f"ошибка {code}"
            if code in REQUEST_CODES:
                raise PlatformError(text, status=200, code=str(code), body=body)
            status = "retry" if code in RETRY_CODES else "failed"
            return [SendResult(key=m.key, status=status, error=text) for m in group]
        numbers = body.get("sms") if isinstance(body.get("sms"), dict) else {}
        results = []
        for message in group:
            entry = numbers.get(phone_digits(message.to))
            if not isinstance(entry, dict):
                results.append(
                    SendResult(key=message.key, status="failed", error="номера нет в ответе")
                )
            elif entry.get("status") == "OK":
                results.append(
                    SendResult(
                        key=message.key,
                        status="accepted",
                        provider_id=str(entry.get("sms_id", "")),
                    )
                )
            else:
                code = _code(entry.get("status_code"))
                text = error_text(entry.get("status_text")) or f"ошибка {code}"
                status = "retry" if code in RETRY_CODES else "failed"
                results.append(SendResult(key=message.key, status=status, error=text))
        return results
