"""Loopback stub of Sendsay's API (base ``/general/api/v100/json/``, ``POST {ACCOUNT}``).

What it checks, as the service does (reference: channels-and-integrations.md, third-party):

- a JSON body with ``action`` and ``apikey``; the account in the path and its key among
  ``accounts`` (else ``error/auth/failed``);
- ``redirects`` ({account path: other path}): a request to the first answers ``{"REDIRECT":
  "/general/api/v100/json/<other>"}`` and must be sent again there (a chain of more than 10 is a
  client bug);
- ``issue.send``: ``letter.subject``, ``letter["from.email"]``, ``letter.message.html`` (or
  ``text``), ``group: "personal"``, ``sendwhen: "now"`` and a well-formed ``email``; a
  malformed address is ``error/email/invalid``.

Errors are ``{"errors": [{"id", "explain"}], "request.id"}`` with HTTP 200 (faults: 429/503 with
the same body). A success is ``{"track.id", "request.id"}``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubReply, json_response, read_json
from tests.stubs.channels import MessagingStub

ACCOUNT, API_KEY = "test-account", "test-sendsay-key"
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


class SendsayStub(MessagingStub):
    prefix = "/general/api/v100/json/"

    def __init__(
        self,
        *,
        accounts: dict[str, str] | None = None,
        redirects: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.accounts = dict(accounts or {ACCOUNT: API_KEY})
        self.redirects = dict(redirects or {})

    @property
    def credentials(self) -> dict[str, str]:
        account, key = next(iter(self.accounts.items()))
        return {"account": account, "api_key": key}

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"errors": [{"id": code, "explain": message}], "request.id": uuid.uuid4().hex}

    def code_for_status(self, status: int) -> str:
        if status == 429:
            return "error/too_many_requests"
        return "error/system/unavailable" if status >= 500 else "error/request/invalid"

    def _fail(self, code: str, message: str) -> StubReply:
        return StubReply(200, self.error_body(200, code, message))

    def handle(self, request: Request) -> Response:
        if request.method != "POST" or not request.path.startswith(self.prefix):
            raise StubReply(404, self.error_body(404, "error/request/invalid", "POST only"))
        path = request.path[len(self.prefix) :].strip("/")
        if path in self.redirects:
            return json_response({"REDIRECT": self.prefix + self.redirects[path]})
        account = path.rsplit("/", 1)[-1]
        body = read_json(request)
        if not isinstance(body, dict) or not body.get("action"):
            raise self._fail("error/request/invalid", "JSON body with action expected")
        if account not in self.accounts or body.get("apikey") != self.accounts[account]:
            raise self._fail("error/auth/failed", "Неверный ключ API или аккаунт")
        if body["action"] != "issue.send":
            raise self._fail("error/action/unknown", f"unknown action {body['action']!r}")
        return self._issue_send(account, body)

    def _issue_send(self, account: str, body: dict[str, Any]) -> Response:
        letter = body.get("letter")
        if not isinstance(letter, dict):
            raise self._fail("error/letter/missing", "letter is required")
        message = letter.get("message")
        for name, value in (
            ("letter.subject", letter.get("subject")),
            ('letter["from.email"]', letter.get("from.email")),
            ("letter.message", message),
        ):
            if not value:
                raise self._fail("error/letter/invalid", f"{name} is required")
        if not isinstance(message, dict) or not (message.get("html") or message.get("text")):
            raise self._fail("error/letter/invalid", "letter.message.html or text is required")
        if body.get("group") != "personal":
            raise self._fail("error/group/invalid", "group must be 'personal' for one email")
        if body.get("sendwhen") != "now":
            raise self._fail("error/sendwhen/invalid", "sendwhen must be 'now'")
        address = str(body.get("email") or "")
        if not _EMAIL.fullmatch(address):
            raise self._fail("error/email/invalid", f"Неверный адрес: {address!r}")
        track = self._accept(
            to=address,
            text=message.get("html") or message.get("text"),
            subject=letter["subject"],
            from_email=letter["from.email"],
            account=account,
        )
        return json_response({"track.id": track, "request.id": uuid.uuid4().hex})
