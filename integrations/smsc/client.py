"""SMSC.ru (https://smsc.ru/sys/send.php).

Facts in ../shared/reference/channels-and-integrations.md (documented): ``send.php`` with
``login`` + ``psw`` (or ``apikey``), ``phones`` (a comma list), ``mes``, ``fmt=3`` (JSON);
``op=1`` asks for a per-number report. An error is ``{"error", "error_code"}`` (HTTP 200): 1
parameters, 2 login/password, 3 funds, 4 IP blocked (the whole account: raised), 5 date format,
6 forbidden text or sender, 7 phone format, 8 undeliverable (the numbers of that request fail),
9 duplicate request or too many concurrent ones (retry). A success is ``{"id", "cnt"}`` with
``op=1`` also ``"phones": [{"phone", "status"|"error", ...}]`` (the per-number shape is (?):
an entry with ``error`` fails that number, any other is taken).

One request per distinct text: its numbers go together in ``phones`` (distinct, at most 100).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from ..http import PlatformError, PlatformHttp, base_url_setting, error_text, unparsed_error
from ..messaging import OutgoingMessage, SendResult, send_groups

DEFAULT_BASE_URL = "https://smsc.ru/sys/"
MAX_NUMBERS = 100
REQUEST_CODES = frozenset({1, 2, 3, 4, 5})
RETRY_CODES = frozenset({9})
# The documented meanings, for a per-number error that comes as a bare code.
ERROR_TEXTS = {
    1: "ошибка в параметрах",
    2: "неверный логин или пароль",
    3: "недостаточно средств на счете",
    4: "IP-адрес временно заблокирован",
    5: "неверный формат даты",
    6: "сообщение запрещено (по тексту или по имени отправителя)",
    7: "неверный формат номера телефона",
    8: "сообщение на указанный номер не может быть доставлено",
    9: "слишком много одинаковых или одновременных запросов",
}


def _code(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def smsc_error(response: httpx.Response) -> tuple[str, str]:
    """``(error_code, error)`` from SMSC's ``{"error", "error_code"}``; any other body is ``HTTP
    <status>`` (:func:`~integrations.http.unparsed_error`), never its text."""
    try:
        body = response.json()
    except ValueError:
        return unparsed_error(response)
    if isinstance(body, dict) and "error_code" in body:
        text = error_text(body.get("error")) or ERROR_TEXTS.get(_code(body.get("error_code")), "")
        if text:
            return str(_code(body.get("error_code"))), text
    return unparsed_error(response)


def base_url() -> str:
    """``SMSC_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("SMSC_BASE_URL", DEFAULT_BASE_URL)


def phone_digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


def text_groups(messages: Sequence[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    """One request per distinct text, with distinct numbers and at most 100 of them."""
    groups: list[tuple[str, set[str], list[OutgoingMessage]]] = []
    for message in messages:
        digits = phone_digits(message.to)
        for text, numbers, group in groups:
            if text == message.body and digits not in numbers and len(group) < MAX_NUMBERS:
                numbers.add(digits)
                group.append(message)
                break
        else:
            groups.append((message.body, {digits}, [message]))
    return [group for _, _, group in groups]


class SmscClient:
    """SMS through SMSC.ru, one request per distinct text.

    ``credentials`` (what the client company enters): ``login`` and ``password``, or ``apikey``
    instead of both. ``sender``: the approved sender name, empty for the account's default.
    Not idempotent (SMSC refuses a repeated identical request within a minute, error 9, but
    that is no key): a timeout leaves that request's messages unknown, never resent."""

    channel = "sms"
    max_batch = 500
    idempotent = False

    def __init__(
        self,
        credentials: dict[str, Any],
        *,
        sender: str = "",
        base_url: str | None = None,
        **http_options: Any,
    ) -> None:
        apikey = str(credentials.get("apikey") or "")
        login = str(credentials.get("login") or "")
        password = str(credentials.get("password") or "")
        if apikey:
            self.auth = {"apikey": apikey}
        elif login and password:
            self.auth = {"login": login, "psw": password}
        else:
            raise ValueError("SMSC: нужны login и password или apikey")
        self.sender = sender
        self.http = PlatformHttp(
            base_url or base_url_setting("SMSC_BASE_URL", DEFAULT_BASE_URL),
            error_parser=smsc_error,
            **http_options,
        )

    def close(self) -> None:
        self.http.close()

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return send_groups(text_groups(messages), self._send_group)

    def _send_group(self, group: Sequence[OutgoingMessage]) -> list[SendResult]:
        data = {
            **self.auth,
            "phones": ",".join(phone_digits(m.to) for m in group),
            "mes": group[0].body,
            "fmt": "3",
            "op": "1",
            "charset": "utf-8",
        }
        if self.sender:
            data["sender"] = self.sender
        body = self.http.request("POST", "send.php", data=data, creates=True).json()
        return self.read_reply(group, body)

    @staticmethod
    def read_reply(group: Sequence[OutgoingMessage], body: Any) -> list[SendResult]:
        if not isinstance(body, dict):
            raise PlatformError("непонятный ответ SMSC", status=200)
        if "error_code" in body or "error" in body:
            code = _code(body.get("error_code"))
            text = error_text(body.get("error")) or ERROR_TEXTS.get(code, f"ошибка {code}")
            if code in REQUEST_CODES:
                raise PlatformError(text, status=200, code=str(code), body=body)
            status = "retry" if code in RETRY_CODES else "failed"
            return [SendResult(key=m.key, status=status, error=text) for m in group]
        message_id = str(body.get("id", ""))
        reports = {}
        for entry in body.get("phones") or []:
            if isinstance(entry, dict):
                reports[phone_digits(str(entry.get("phone", "")))] = entry
        results = []
        for message in group:
            digits = phone_digits(message.to)
            entry = reports.get(digits, {})
            if entry.get("error") not in (None, "", 0, "0"):
                error = entry["error"]
                text = ERROR_TEXTS.get(_code(error)) or error_text(str(error))
                status = "retry" if _code(error) in RETRY_CODES else "failed"
                results.append(SendResult(key=message.key, status=status, error=text))
            else:
                # SMSC's status queries take the message id and the number.
                provider_id = f"{message_id}:{digits}"
                results.append(
                    SendResult(key=message.key, status="accepted", provider_id=provider_id)
                )
        return results
