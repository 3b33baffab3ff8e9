"""Loopback stub of UniSender's API (base ``/ru/api/``): ``sendEmail``.

What it checks, as the service does (reference: channels-and-integrations.md):

- parameters by GET or POST, never both in one call (``invalid_arg``); ``format=json``;
- ``api_key`` among ``api_keys`` (else ``invalid_api_key``); ``broke = True`` answers
  ``not_enough_money``; more than ``calls_per_minute`` calls of a key within a minute answer
  ``api_call_limit_exceeded_for_api_key`` (documented: 1,200);
- ``email``, ``sender_name``, ``sender_email``, ``subject``, ``body``, ``list_id`` required
  (``invalid_arg``); ``list_id`` among ``list_ids``; ``body`` at most 1 MB;
- a malformed address, or a second send to one address within ``min_interval`` seconds
  (documented: 60), is that address's error (``invalid_email`` / ``retry_later``), in the entry
  with ``error_checking=1`` and at the top otherwise.

Errors are ``{"error", "code"}`` with HTTP 200 (faults: 429/503 with the same body). A success is
``{"result": [{"index": 0, "email", "id"}]}`` (the exact shape is not documented).
"""

from __future__ import annotations

import re
import time
from collections import deque
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubReply, json_response
from tests.stubs.channels import MessagingStub

API_KEY = "test-unisender-key"
LIST_ID = "1"
MAX_BODY_BYTES = 1_000_000
REQUIRED = ("email", "sender_name", "sender_email", "subject", "body", "list_id")
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


class UniSenderStub(MessagingStub):
    prefix = "/ru/api/"

    def __init__(
        self,
        *,
        api_keys: set[str] | frozenset[str] = frozenset({API_KEY}),
        list_ids: set[str] | frozenset[str] = frozenset({LIST_ID}),
        min_interval: float = 60.0,
        calls_per_minute: int = 1200,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.api_keys = set(api_keys)
        self.list_ids = set(list_ids)
        self.min_interval = min_interval
        self.calls_per_minute = calls_per_minute
        self.broke = False
        self._calls: dict[str, deque[float]] = {}
        self._last_send: dict[str, float] = {}

    @property
    def credentials(self) -> dict[str, str]:
        """What a client company enters for this account."""
        return {"api_key": sorted(self.api_keys)[0], "list_id": sorted(self.list_ids)[0]}

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"error": message, "code": code}

    def code_for_status(self, status: int) -> str:
        return {429: "api_call_limit_exceeded_for_api_key", 404: "unknown_method"}.get(
            status, "retry_later" if status >= 500 else "invalid_arg"
        )

    def _fail(self, code: str, message: str) -> StubReply:
        return StubReply(200, self.error_body(200, code, message))

    def handle(self, request: Request) -> Response:
        method = request.path[len(self.prefix) :].strip("/")
        if request.method == "POST":
            if request.args:
                raise self._fail("invalid_arg", "parameters by GET or POST, not both")
            params = request.form
        elif request.method == "GET":
            params = request.args
        else:
            raise self._fail("invalid_arg", "GET or POST only")
        if params.get("format") != "json":
            return Response("format=json expected", status=200, mimetype="text/plain")
        self._authorize(params.get("api_key", ""))
        if method != "sendEmail":
            raise self._fail("unknown_method", f"unknown method {method!r}")
        return self._send_email(params)

    def _authorize(self, api_key: str) -> None:
        if api_key not in self.api_keys:
            raise self._fail("invalid_api_key", "Указан неверный ключ доступа к API")
        with self._lock:
            calls = self._calls.setdefault(api_key, deque())
            now = time.monotonic()
            while calls and calls[0] <= now - 60:
                calls.popleft()
            if len(calls) >= self.calls_per_minute:
                raise self._fail(
                    "api_call_limit_exceeded_for_api_key",
                    f"Превышен лимит {self.calls_per_minute} вызовов в минуту",
                )
            calls.append(now)
        if self.broke:
            raise self._fail("not_enough_money", "Недостаточно средств на счёте")

    def _send_email(self, params: Any) -> Response:
        for name in REQUIRED:
            if not params.get(name):
                raise self._fail("invalid_arg", f"Не указан обязательный параметр {name}")
        if params["list_id"] not in self.list_ids:
            raise self._fail("invalid_arg", f"Список {params['list_id']} не найден")
        if len(params["body"].encode()) > MAX_BODY_BYTES:
            raise self._fail("invalid_arg", "Размер письма больше 1 МБ")
        address = params["email"].strip()
        checking = params.get("error_checking") == "1"
        error = None
        if not _EMAIL.fullmatch(address.rpartition("<")[2].rstrip(">")):
            error = ("invalid_email", f"Неверный адрес {address}")
        with self._lock:
            now = time.monotonic()
            last = self._last_send.get(address)
            if error is None and last is not None and now - last < self.min_interval:
                error = ("retry_later", "Письмо на этот адрес уже отправлено меньше минуты назад")
            if error is not None:
                if not checking:
                    raise self._fail(*error)
                entry = {
                    "index": 0,
                    "email": address,
                    "errors": [dict(zip(("code", "message"), error, strict=True))],
                }
                return json_response({"result": [entry]})
            self._last_send[address] = now
            email_id = self._accept(
                to=address,
                text=params["body"],
                subject=params["subject"],
                sender_email=params["sender_email"],
                sender_name=params["sender_name"],
                list_id=params["list_id"],
            )
        return json_response({"result": [{"index": 0, "email": address, "id": email_id}]})
