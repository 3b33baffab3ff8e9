"""Loopback stub of Yandex Metrica's offline conversions (base ``.../management/v1/``).

What it checks, as Metrica does (reference: channels-and-integrations.md, documented):

- ``Authorization: OAuth <token>`` with a token of ``tokens`` (else 401 ``unauthorized``);
  the counter in the path among ``counters`` (else 403 ``access_denied``);
- ``POST counter/{id}/offline_conversions/upload?client_id_type=CLIENT_ID|USER_ID|YCLID``:
  multipart field ``file``; a UTF-8 CSV whose header is the id column of that type
  (``ClientId``/``UserId``/``Yclid``), ``Target``, ``DateTime``, then ``Price`` and
  ``Currency`` (optional, in this order); every row: a non-empty id and target, ``DateTime``
  unix seconds in the past, ``Price`` a number >= 0, ``Currency`` three capital letters of
  ISO 4217 (``RUB``, ``USD``, ``EUR``, ... here); anything else 400 ``invalid_parameter`` with
  the line. At most ``quota_per_minute`` uploads a minute (429 ``quota``).
- The new uploading is ``UPLOADED`` and, after ``processing_delay``, ``PROCESSED`` (or
  ``LINKAGE_FAILURE`` when ``stub.linkage_failure`` is set); ``GET .../uploading/{id}`` and
  ``GET .../uploadings`` read them. ``stub.rows[uploading_id]`` keeps the parsed rows.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubServer, json_response

TOKEN = "test-metrica-token"
COUNTER = "44147844"
ID_COLUMNS = {"CLIENT_ID": "ClientId", "USER_ID": "UserId", "YCLID": "Yclid"}
CURRENCIES = frozenset({"RUB", "USD", "EUR", "BYN", "KZT", "UAH", "TRY"})
ERROR_TYPES = {
    400: "invalid_parameter",
    401: "unauthorized",
    403: "access_denied",
    404: "not_found",
    429: "quota",
    500: "backend_error",
    503: "backend_error",
}
_UPLOAD = re.compile(r"counter/(\d+)/offline_conversions/upload")
_ONE = re.compile(r"counter/(\d+)/offline_conversions/uploading/(\d+)")
_LIST = re.compile(r"counter/(\d+)/offline_conversions/uploadings")


class YandexMetricaStub(StubServer):
    prefix = "/management/v1/"

    def __init__(
        self,
        *,
        tokens: set[str] | frozenset[str] = frozenset({TOKEN}),
        counters: set[str] | frozenset[str] = frozenset({COUNTER}),
        **options: Any,
    ) -> None:
        options.setdefault("quota_per_minute", 20)
        super().__init__(**options)
        self.tokens = set(tokens)
        self.counters = set(counters)
        self.linkage_failure = False
        self.uploadings: dict[int, dict[str, Any]] = {}
        self.rows: dict[int, list[dict[str, str]]] = {}
        self._ids = itertools.count(1000)

    @property
    def credentials(self) -> dict[str, str]:
        return {"token": sorted(self.tokens)[0]}

    @property
    def counter(self) -> str:
        return sorted(self.counters)[0]

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {
            "errors": [{"error_type": code, "message": message}],
            "code": status,
            "message": message,
        }

    def code_for_status(self, status: int) -> str:
        return ERROR_TYPES.get(status, "backend_error")

    def _bad(self, message: str):
        return self.error(400, "invalid_parameter", message)

    def handle(self, request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("OAuth ") or auth[6:] not in self.tokens:
            raise self.error(401, "unauthorized", "Invalid oauth_token")
        path = request.path[len(self.prefix) :] if request.path.startswith(self.prefix) else ""
        for pattern, method, handler in (
            (_UPLOAD, "POST", self._upload),
            (_ONE, "GET", self._one),
            (_LIST, "GET", self._list),
        ):
            match = pattern.fullmatch(path)
            if match and request.method == method:
                if match.group(1) not in self.counters:
                    raise self.error(403, "access_denied", "Access to the counter is denied")
                return handler(request, *match.groups())
        raise self.error(404, "not_found", "No such method")

    def _upload(self, request: Request, counter: str) -> Response:
        kind = request.args.get("client_id_type", "")
        if kind not in ID_COLUMNS:
            raise self._bad("client_id_type: CLIENT_ID, USER_ID or YCLID")
        upload = request.files.get("file")
        if upload is None:
            raise self._bad("The file parameter is required (multipart)")
        self._take_quota()
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise self._bad("The file is not UTF-8") from None
        reader = csv.reader(io.StringIO(text))
        header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
        expected = [ID_COLUMNS[kind], "Target", "DateTime"]
        if header[:3] != expected or header[3:] not in ([], ["Price"], ["Price", "Currency"]):
            raise self._bad(
                f"Header: {','.join(expected)}[,Price[,Currency]] expected, got {','.join(header)}"
            )
        now = time.time()
        rows = []
        for line, values in enumerate(reader, start=2):
            if not values:
                continue
            if len(values) != len(header):
                raise self._bad(f"line {line}: {len(header)} columns expected")
            row = dict(zip(header, values, strict=True))
            if not row[header[0]].strip() or not row["Target"].strip():
                raise self._bad(f"line {line}: empty {header[0]} or Target")
            if not row["DateTime"].isdigit() or int(row["DateTime"]) > now:
                raise self._bad(f"line {line}: DateTime must be unix seconds in the past")
            if "Price" in row:
                try:
                    if float(row["Price"]) < 0:
                        raise ValueError
                except ValueError:
                    raise self._bad(f"line {line}: Price must be a number >= 0") from None
            if "Currency" in row and row["Currency"] not in CURRENCIES:
                raise self._bad(f"line {line}: Currency must be an ISO 4217 code")
            rows.append(row)
        if not rows:
            raise self._bad("The file has no data rows")
        with self._lock:
            uploading_id = next(self._ids)
            uploading = {
                "id": uploading_id,
                "create_time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "comment": request.args.get("comment", ""),
                "source_quantity": len(rows),
                "line_quantity": len(rows),
                "client_id_type": kind,
                "status": "UPLOADED",
                "counter": counter,
            }
            self.uploadings[uploading_id] = uploading
            self.rows[uploading_id] = rows
            failed = self.linkage_failure

        def complete() -> None:
            uploading["status"] = "LINKAGE_FAILURE" if failed else "PROCESSED"

        self._schedule(uploading_id, complete)
        return json_response({"uploading": dict(uploading)})

    def _one(self, request: Request, counter: str, uploading_id: str) -> Response:
        with self._lock:
            uploading = self.uploadings.get(int(uploading_id))
            if uploading is None or uploading["counter"] != counter:
                raise self.error(404, "not_found", "Uploading not found")
            return json_response({"uploading": dict(uploading)})

    def _list(self, request: Request, counter: str) -> Response:
        with self._lock:
            found = [dict(u) for u in self.uploadings.values() if u["counter"] == counter]
        return json_response({"uploadings": found})
