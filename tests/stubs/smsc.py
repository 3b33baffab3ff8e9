"""Loopback stub of SMSC.ru (``/sys/send.php``).

What it checks, as the service does (reference: channels-and-integrations.md, documented):

- ``login`` + ``psw`` among ``accounts`` or ``apikey`` among ``apikeys`` (else error 2);
  ``broke = True`` answers error 3; ``fmt=3`` (JSON; other formats are not modelled: plain
  text "ERROR = 1"); ``phones`` and ``mes`` required (error 1); ``sender`` among ``senders``
  when given (error 6);
- per number: 11-15 digits after dropping ``+`` and separators (else error 7), a number in
  ``unroutable`` cannot be delivered to (error 8). With ``op=1`` each number is reported in
  ``phones`` (``{"phone", "status"}`` or ``{"phone", "error"}``); when no number is valid the
  request fails with the first number's error;
- the same request (numbers, text, sender) accepted within the last minute is refused with
  error 9 (documented: duplicate requests).

Errors are ``{"error", "error_code"}`` with HTTP 200. A success is ``{"id", "cnt"}`` (+
``phones`` with ``op=1``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubReply, json_response
from tests.stubs.channels import MessagingStub

LOGIN, PASSWORD = "test-smsc", "test-smsc-password"
ERRORS = {
    1: "parameters error",
    2: "authorise error",
    3: "no money",
    6: "message is denied",
    7: "invalid number",
    8: "cannot deliver",
    9: "duplicate request, wait a minute",
}
_SEPARATORS = re.compile(r"[\s()+-]")
_PHONE = re.compile(r"[0-9]{11,15}")


class SmscStub(MessagingStub):
    prefix = "/sys/"

    def __init__(
        self,
        *,
        accounts: dict[str, str] | None = None,
        apikeys: set[str] | frozenset[str] = frozenset(),
        senders: set[str] | frozenset[str] = frozenset({"CVM-DEMO"}),
        unroutable: set[str] | frozenset[str] = frozenset(),
        duplicate_window: float = 60.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.accounts = dict(accounts or {LOGIN: PASSWORD})
        self.apikeys = set(apikeys)
        self.senders = set(senders)
        self.unroutable = set(unroutable)
        self.duplicate_window = duplicate_window
        self.broke = False
        self._recent: dict[tuple[str, str, str], float] = {}
        self._message_id = 0

    @property
    def credentials(self) -> dict[str, str]:
        login, password = next(iter(self.accounts.items()))
        return {"login": login, "password": password}

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"error": message, "error_code": int(code)}

    def code_for_status(self, status: int) -> str:
        return "9" if status == 429 else "1"

    def _fail(self, code: int) -> StubReply:
        return StubReply(200, self.error_body(200, str(code), ERRORS[code]))

    def handle(self, request: Request) -> Response:
        if request.path != self.prefix + "send.php":
            raise StubReply(404, self.error_body(404, "1", "no such page"))
        params = request.form if request.method == "POST" else request.args
        if params.get("fmt") != "3":
            return Response("ERROR = 1 (parameters error)", mimetype="text/plain")
        apikey = params.get("apikey")
        if apikey:
            if apikey not in self.apikeys:
                raise self._fail(2)
        elif self.accounts.get(params.get("login", "")) != params.get("psw") or not params.get(
            "psw"
        ):
            raise self._fail(2)
        if self.broke:
            raise self._fail(3)
        phones_text, text = params.get("phones", ""), params.get("mes", "")
        if not phones_text or not text:
            raise self._fail(1)
        sender = params.get("sender", "")
        if sender and sender not in self.senders:
            raise self._fail(6)
        phones = [_SEPARATORS.sub("", p) for p in re.split(r"[,;]", phones_text) if p.strip()]
        reports = []
        for phone in phones:
            if not _PHONE.fullmatch(phone):
                reports.append((phone, 7))
            elif phone in self.unroutable:
                reports.append((phone, 8))
            else:
                reports.append((phone, 0))
        valid = [phone for phone, error in reports if not error]
        if not valid:
            raise self._fail(reports[0][1])
        signature = (",".join(sorted(phones)), text, sender)
        with self._lock:
            now = time.monotonic()
            if now - self._recent.get(signature, -1e9) < self.duplicate_window:
                raise self._fail(9)
            self._recent[signature] = now
            self._message_id += 1
            message_id = self._message_id
            for phone in valid:
                self._accept(to=phone, text=text, sender=sender, message_id=message_id)
        reply: dict[str, Any] = {"id": message_id, "cnt": len(valid)}
        if params.get("op") == "1":
            reply["phones"] = [
                {"phone": phone, "error": str(error)}
                if error
                else {"phone": phone, "mccmnc": "25001", "cost": "1.40", "status": "0"}
                for phone, error in reports
            ]
        return json_response(reply)
