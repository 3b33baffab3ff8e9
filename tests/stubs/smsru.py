"""Loopback stub of SMS.ru (``POST /sms/send``).

What it checks, as the service does (reference: channels-and-integrations.md, documented):

- ``api_id`` among ``api_ids`` (else 200 "Неправильный api_id"); ``broke = True`` answers 201
  (no funds); ``from`` must be one of ``senders`` when given (else 204); ``json=1`` (otherwise
  the service answers plain text lines: here "json=1 expected");
- recipients as ``to`` (a comma list) + ``msg``, or ``to[PHONE]=text``; at most 100 numbers;
- per number: 11-15 digits (else 202), a non-empty text (203), at most 8 SMS (205: 8×70
  characters of Cyrillic, 8×160 of Latin), a number in ``unroutable`` has no route (207).

Replies (HTTP 200): ``{"status": "OK", "status_code": 100, "sms": {PHONE: {"status": "OK",
"status_code": 100, "sms_id"} | {"status": "ERROR", "status_code", "status_text"}},
"balance"}``; a request error is ``{"status": "ERROR", "status_code", "status_text"}``.
"""

from __future__ import annotations

import re
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubReply, json_response
from tests.stubs.channels import MessagingStub

API_ID = "test-smsru-api-id"
MAX_NUMBERS = 100
_PHONE = re.compile(r"[0-9]{11,15}")
_TO_KEY = re.compile(r"to\[([^\]]*)\]")


def too_long(text: str) -> bool:
    limit = 8 * (160 if text.isascii() else 70)
    return len(text) > limit


class SmsRuStub(MessagingStub):
    prefix = "/"

    def __init__(
        self,
        *,
        api_ids: set[str] | frozenset[str] = frozenset({API_ID}),
        senders: set[str] | frozenset[str] = frozenset({"CVM-DEMO"}),
        unroutable: set[str] | frozenset[str] = frozenset(),
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.api_ids = set(api_ids)
        self.senders = set(senders)
        self.unroutable = set(unroutable)
        self.broke = False
        self.balance = 1000.0

    @property
    def credentials(self) -> dict[str, str]:
        return {"api_id": sorted(self.api_ids)[0]}

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"status": "ERROR", "status_code": int(code), "status_text": message}

    def code_for_status(self, status: int) -> str:
        return "220" if status >= 429 else "300"

    def _fail(self, code: int, text: str) -> StubReply:
        return StubReply(200, self.error_body(200, str(code), text))

    def handle(self, request: Request) -> Response:
        if request.path.strip("/") != "sms/send":
            raise StubReply(404, self.error_body(404, "300", "no such method"))
        params = request.form if request.method == "POST" else request.args
        if params.get("json") != "1":
            return Response("json=1 expected", mimetype="text/plain")
        if params.get("api_id") not in self.api_ids:
            raise self._fail(200, "Неправильный api_id")
        if self.broke:
            raise self._fail(201, "Не хватает средств на лицевом счету")
        sender = params.get("from", "")
        if sender and sender not in self.senders:
            raise self._fail(204, "Имя отправителя не согласовано с администрацией")
        recipients: list[tuple[str, str]] = []
        for key, value in params.items(multi=True):
            match = _TO_KEY.fullmatch(key)
            if match:
                recipients.append((match.group(1), value))
        if not recipients and params.get("to"):
            text = params.get("msg", "")
            recipients = [(phone.strip(), text) for phone in params["to"].split(",")]
        if not recipients:
            raise self._fail(202, "Неправильно указан номер телефона получателя")
        if len(recipients) > MAX_NUMBERS:
            raise self._fail(202, f"Больше {MAX_NUMBERS} номеров в одном запросе")
        numbers: dict[str, Any] = {}
        for phone, text in recipients:
            numbers[phone] = self._one(phone, text, sender)
        return json_response(
            {"status": "OK", "status_code": 100, "sms": numbers, "balance": self.balance}
        )

    def _one(self, phone: str, text: str, sender: str) -> dict[str, Any]:
        if not _PHONE.fullmatch(phone):
            return _error(202, "Неправильно указан номер телефона получателя")
        if not text.strip():
            return _error(203, "Нет текста сообщения")
        if too_long(text):
            return _error(205, "Сообщение слишком длинное (превышает 8 СМС)")
        if phone in self.unroutable:
            return _error(207, "На этот номер нет маршрута для доставки сообщений")
        sms_id = self._accept(to=phone, text=text, sender=sender)
        with self._lock:
            self.balance -= 1
        return {"status": "OK", "status_code": 100, "sms_id": f"000000-{sms_id}"}


def _error(code: int, text: str) -> dict[str, Any]:
    return {"status": "ERROR", "status_code": code, "status_text": text}
