"""Loopback stub of the Yandex Audiences management API (base `.../v1/management/`).

What it checks, as the real API does (reference: /work/shared/reference/ad-platforms.md):

- `Authorization: OAuth <token>` with a token from `tokens`; no header, another scheme
  (`Bearer`) or an unknown token -> 401 `unauthorized`.
- `POST segments/upload_csv_file`: multipart field `file` (else 400 `missing_parameter`,
  location "file"); UTF-8 CSV with a header row of columns from {email, phone, external_id}
  including email or phone; every row has email or phone; at most 1 GB. The new segment is
  `uploaded`, `hashed: false`, `item_quantity` = data rows. Its name is the uploaded file name
  without extension -- an assumption: the real API names the segment after the file too, the
  name is set for good by `confirm`.
- `POST segment/{id}/confirm`: id matches the path, `content_type: "crm"`, non-empty name,
  status `uploaded`; `hashed: true` needs `hashing_alg: "SHA256"` (MD5 refused since January
  2025) and every value 64 lowercase hex characters; `hashed: false` needs plain values (email
  with '@' and no spaces, phone of 11-15 digits without '+'); at least 100 rows unless
  `?check_size=false`. Then `is_processed` -> `processed` (or `few_data` below 100 matched)
  after `processing_delay`.
- `POST segment/{id}/modify_data?modification_type=addition|subtraction|replace`: only on a
  `processed` segment (anything else -> 400 `query_error`, as third-party clients report);
  exactly the original columns, same hashed state and value format. Values change at once;
  the status goes `is_updated` -> `processed`/`few_data` after `processing_delay`.
- `POST segments/create_lookalike`: `lookalike_value` int 1..5, `lookalike_link` an existing
  `processed` segment.
- `PUT segment/{id}` rename, `DELETE segment/{id}`, `GET segments`.
- At most `quota_per_minute` upload/confirm/modify/lookalike calls per minute (429 `quota`,
  `Retry-After: 1`); the real per-hour (100) and per-day (500) limits are not modelled.

Matching is simulated: a value matches when int(sha256(value)[:8 hex], 16) % 100 <
`match_percent`, so the outcome is deterministic. Errors use the documented body
`{"errors": [{"error_type", "message", "location"}], "code", "message"}`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubReply, StubServer, json_response, read_json

DEFAULT_TOKENS = frozenset({"test-yandex-token"})
CRM_COLUMNS = frozenset({"email", "phone", "external_id"})
VALUE_COLUMNS = ("email", "phone")  # the columns whose values are stored and matched
MAX_FILE_BYTES = 1 << 30
MIN_ROWS = 100
MIN_MATCHED = 100
MODIFICATION_TYPES = ("addition", "subtraction", "replace")

ERROR_TYPES = {
    400: "invalid_parameter",
    401: "unauthorized",
    403: "access_denied",
    404: "not_found",
    405: "query_error",
    413: "invalid_parameter",
    429: "quota",
    500: "backend_error",
    503: "backend_error",
}

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PLAIN = {"email": re.compile(r"[^@\s]+@[^@\s]+"), "phone": re.compile(r"[0-9]{11,15}")}


def _now_text() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def value_matches(value: str, match_percent: int) -> bool:
    """The stub's deterministic stand-in for Yandex matching a value to its users."""
    digest = hashlib.sha256(value.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < match_percent


class _CsvError(Exception):
    pass


@dataclass
class CrmFile:
    """A parsed CRM CSV: the value sets plus where the first value that is not SHA-256 hex
    (and the first that is not a valid plain value) sits, so confirm needs no second pass."""

    columns: list[str]
    rows: int = 0
    values: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in VALUE_COLUMNS})
    first_not_hashed: tuple[int, str] | None = None
    first_not_plain: tuple[int, str] | None = None

    def format_error(self, hashed: bool) -> str | None:
        if hashed and self.first_not_hashed:
            line, column = self.first_not_hashed
            return (
                f"line {line}: the {column} value is not a SHA-256 hash "
                "(64 lowercase hex characters)"
            )
        if not hashed and self.first_not_plain:
            line, column = self.first_not_plain
            rule = (
                "an email with '@'"
                if column == "email"
                else "a phone of 11-15 digits with the country code, no '+'"
            )
            return f"line {line}: the {column} value is not {rule} (the segment is not hashed)"
        return None


def parse_crm_csv(stream: IO[bytes]) -> CrmFile:
    """Read a CRM CSV line by line (the file part is already on disk)."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    reader = csv.reader(text)
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise _CsvError("the file is empty: a header row is required") from None
        columns = [name.strip().lstrip("\ufeff").strip() for name in header]
        for name in columns:
            if name not in CRM_COLUMNS:
                raise _CsvError(
                    f"unknown column {name!r}: allowed columns are email, phone, external_id"
                )
        if len(set(columns)) != len(columns):
            raise _CsvError("duplicate column in the header")
        if "email" not in columns and "phone" not in columns:
            raise _CsvError("the header must include an email or a phone column")
        parsed = CrmFile(columns=columns)
        width = len(columns)
        indexes = [(columns.index(c), c) for c in VALUE_COLUMNS if c in columns]
        values = parsed.values
        rows = 0
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise _CsvError(f"line {reader.line_num}: expected {width} columns, got {len(row)}")
            present = False
            for index, column in indexes:
                value = row[index]
                if not value:
                    continue
                present = True
                values[column].add(value)
                if parsed.first_not_hashed is None and not _SHA256_HEX.fullmatch(value):
                    parsed.first_not_hashed = (reader.line_num, column)
                if parsed.first_not_plain is None and not _PLAIN[column].fullmatch(value):
                    parsed.first_not_plain = (reader.line_num, column)
            if not present:
                raise _CsvError(f"line {reader.line_num}: the row has neither email nor phone")
            rows += 1
        parsed.rows = rows
        return parsed
    except UnicodeDecodeError:
        raise _CsvError("the file is not UTF-8") from None
    except csv.Error as exc:
        raise _CsvError(f"line {reader.line_num}: bad CSV: {exc}") from None
    finally:
        text.detach()


@dataclass
class _Segment:
    info: dict[str, Any]
    columns: list[str] = field(default_factory=list)
    values: dict[str, set[str]] = field(default_factory=dict)
    upload: CrmFile | None = None  # kept until confirm, for the format check
    modifications: int = 0


class YandexAudiencesStub(StubServer):
    """Yandex Audiences on http://127.0.0.1:<port>/v1/management/ (see the module docstring)."""

    prefix = "/v1/management/"

    def __init__(
        self,
        *,
        tokens: set[str] | frozenset[str] = DEFAULT_TOKENS,
        match_percent: int = 80,
        quota_per_minute: int | None = 10,
        **options: Any,
    ) -> None:
        super().__init__(quota_per_minute=quota_per_minute, **options)
        self.tokens = set(tokens)
        self.match_percent = match_percent
        self._segments: dict[int, _Segment] = {}
        self._next_id = 1
        self._uploads = 0

    # --- errors ----------------------------------------------------------------------------

    def error_body(
        self, status: int, code: str, message: str, location: str | None = None
    ) -> dict[str, Any]:
        error: dict[str, Any] = {"error_type": code, "message": message}
        if location:
            error["location"] = location
        return {"errors": [error], "code": status, "message": message}

    def code_for_status(self, status: int) -> str:
        return ERROR_TYPES.get(status, "backend_error")

    def _fail(
        self, status: int, message: str, location: str | None = None, code: str = ""
    ) -> StubReply:
        code = code or self.code_for_status(status)
        return StubReply(status, self.error_body(status, code, message, location))

    # --- routing ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        self._authorize(request)
        if not request.path.startswith(self.prefix):
            raise self._fail(404, f"unknown path {request.path}")
        parts = request.path[len(self.prefix) :].strip("/").split("/")
        method = request.method
        if parts == ["segments"] and method == "GET":
            return self._list(request)
        if parts == ["segments", "upload_csv_file"] and method == "POST":
            self._take_quota()
            return self._upload(request)
        if parts == ["segments", "create_lookalike"] and method == "POST":
            self._take_quota()
            return self._create_lookalike(request)
        if len(parts) in (2, 3) and parts[0] == "segment":
            segment_id = self._segment_id(parts[1])
            if len(parts) == 3 and parts[2] == "confirm" and method == "POST":
                self._take_quota()
                return self._confirm(request, segment_id)
            if len(parts) == 3 and parts[2] == "modify_data" and method == "POST":
                self._take_quota()
                return self._modify(request, segment_id)
            if len(parts) == 2 and method == "PUT":
                return self._rename(request, segment_id)
            if len(parts) == 2 and method == "DELETE":
                return self._delete(segment_id)
        raise self._fail(404, f"no such method: {method} {request.path}")

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise self._fail(401, "Authorization header is missing")
        if scheme != "OAuth":
            raise self._fail(401, f"unsupported authorization scheme {scheme!r}: use OAuth")
        if token.strip() not in self.tokens:
            raise self._fail(401, "invalid OAuth token")

    def _segment_id(self, text: str) -> int:
        if not text.isdigit():
            raise self._fail(400, f"segment id must be an integer, got {text!r}", "segment_id")
        return int(text)

    def _get(self, segment_id: int) -> _Segment:
        segment = self._segments.get(segment_id)
        if segment is None:
            raise self._fail(404, f"segment {segment_id} not found")
        return segment

    # --- handlers --------------------------------------------------------------------------

    def _list(self, request: Request) -> Response:
        with self._lock:
            items = [dict(s.info) for _, s in sorted(self._segments.items())]
        return json_response({"segments": items})

    def _read_csv_part(self, request: Request) -> tuple[CrmFile, str]:
        upload = request.files.get("file")
        if upload is None:
            raise self._fail(400, "multipart field 'file' is required", "file", "missing_parameter")
        stream = upload.stream
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        if size > MAX_FILE_BYTES:
            raise self._fail(400, "the file is larger than 1 GB", "file")
        try:
            parsed = parse_crm_csv(stream)
        except _CsvError as exc:
            raise self._fail(400, str(exc), "file") from None
        return parsed, upload.filename or ""

    def _upload(self, request: Request) -> Response:
        parsed, filename = self._read_csv_part(request)
        name = os.path.splitext(os.path.basename(filename))[0] or "segment"
        with self._lock:
            segment_id = self._next_id
            self._next_id += 1
            info = {
                "id": segment_id,
                "name": name,
                "type": "uploading",
                "status": "uploaded",
                "hashed": False,
                "content_type": "crm",
                "item_quantity": parsed.rows,
                "create_time": _now_text(),
            }
            self._segments[segment_id] = _Segment(
                info=info, columns=parsed.columns, values=parsed.values, upload=parsed
            )
            self._uploads += 1
            return json_response({"segment": dict(info)})

    def _segment_body(self, request: Request) -> dict[str, Any]:
        body = read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("segment"), dict):
            raise self._fail(
                400, 'JSON body {"segment": {...}} is required', "segment", "missing_parameter"
            )
        return body["segment"]

    def _confirm(self, request: Request, segment_id: int) -> Response:
        body = self._segment_body(request)
        with self._lock:
            segment = self._get(segment_id)
            for key in ("id", "name", "hashed", "content_type"):
                if key not in body:
                    raise self._fail(
                        400, f"segment.{key} is required", f"segment.{key}", "missing_parameter"
                    )
            if str(body["id"]) != str(segment_id):
                raise self._fail(400, "segment.id does not match the path", "segment.id")
            if body["content_type"] != "crm":
                raise self._fail(400, "content_type must be 'crm'", "segment.content_type")
            name = body["name"]
            if not isinstance(name, str) or not name.strip():
                raise self._fail(400, "segment.name must be a non-empty string", "segment.name")
            if segment.info["status"] != "uploaded" or segment.upload is None:
                raise self._fail(400, "segment already confirmed", "segment_id")
            hashed = body["hashed"]
            if hashed not in (True, False, 1, 0) or isinstance(hashed, float):
                raise self._fail(400, "segment.hashed must be true/false or 1/0", "segment.hashed")
            hashed = bool(hashed)
            algorithm = body.get("hashing_alg")
            if hashed:
                if algorithm is None:
                    raise self._fail(
                        400,
                        "segment.hashing_alg is required for hashed data",
                        "segment.hashing_alg",
                        "missing_parameter",
                    )
                if algorithm == "MD5":
                    raise self._fail(
                        400,
                        "MD5 uploads are no longer accepted (since January 2025): use SHA256",
                        "segment.hashing_alg",
                    )
                if algorithm != "SHA256":
                    raise self._fail(400, "hashing_alg must be SHA256", "segment.hashing_alg")
            problem = segment.upload.format_error(hashed)
            if problem:
                raise self._fail(400, problem, "file")
            if request.args.get("check_size") != "false" and segment.upload.rows < MIN_ROWS:
                raise self._fail(400, f"segment size must be at least {MIN_ROWS}", "file")
            info = segment.info
            info["name"] = name
            info["hashed"] = hashed
            if hashed:
                info["hashing_alg"] = algorithm
            if "device_matching_type" in body:
                info["device_matching_type"] = body["device_matching_type"]
            info["status"] = "is_processed"
            segment.upload = None
            self._schedule(segment_id, lambda: self._finish(segment_id))
            return json_response({"segment": dict(info)})

    def _finish(self, segment_id: int) -> None:
        """Processing done: quantities from the value sets, few_data below 100 matched."""
        segment = self._segments.get(segment_id)
        if segment is None:
            return
        info = segment.info
        if info.get("type") == "lookalike":
            info["status"] = "processed"
            return
        total = sum(len(values) for values in segment.values.values())
        percent = self.match_percent
        matched = sum(
            1 for values in segment.values.values() for v in values if value_matches(v, percent)
        )
        info["valid_unique_quantity"] = total
        info["matched_quantity"] = matched
        info["matched_percentage"] = round(100 * matched / total, 1) if total else 0
        info["status"] = "processed" if matched >= MIN_MATCHED else "few_data"

    def _modify(self, request: Request, segment_id: int) -> Response:
        kind = request.args.get("modification_type")
        if kind is None:
            raise self._fail(
                400, "modification_type is required", "modification_type", "missing_parameter"
            )
        if kind not in MODIFICATION_TYPES:
            raise self._fail(
                400,
                "modification_type must be addition, subtraction or replace",
                "modification_type",
            )
        with self._lock:
            segment = self._get(segment_id)
            if segment.info.get("type") != "uploading":
                raise self._fail(
                    400, "only CRM segments can be modified", "segment_id", "query_error"
                )
            if segment.info["status"] != "processed":
                raise self._fail(400, "Segment is not processed yet", "segment_id", "query_error")
            hashed = segment.info["hashed"]
            columns = segment.columns
        parsed, _ = self._read_csv_part(request)
        if parsed.columns != columns:
            raise self._fail(
                400, f"the columns must be the same as the segment's: {','.join(columns)}", "file"
            )
        problem = parsed.format_error(hashed)
        if problem:
            raise self._fail(400, problem, "file")
        with self._lock:
            segment = self._get(segment_id)
            if segment.info["status"] != "processed":  # changed while we were parsing
                raise self._fail(400, "Segment is not processed yet", "segment_id", "query_error")
            for column, values in segment.values.items():
                new = parsed.values[column]
                if kind == "addition":
                    values |= new
                elif kind == "subtraction":
                    values -= new
                else:
                    segment.values[column] = new
            segment.modifications += 1
            segment.info["item_quantity"] = sum(len(v) for v in segment.values.values())
            segment.info["status"] = "is_updated"
            self._schedule(segment_id, lambda: self._finish(segment_id))
            return json_response({"segment": dict(segment.info)})

    def _create_lookalike(self, request: Request) -> Response:
        body = self._segment_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self._fail(400, "segment.name must be a non-empty string", "segment.name")
        link = body.get("lookalike_link")
        if link is None:
            raise self._fail(
                400,
                "segment.lookalike_link is required",
                "segment.lookalike_link",
                "missing_parameter",
            )
        value = body.get("lookalike_value")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise self._fail(
                400, "lookalike_value must be an integer from 1 to 5", "segment.lookalike_value"
            )
        flags = {}
        for flag in ("maintain_device_distribution", "maintain_geo_distribution"):
            flags[flag] = body.get(flag, True)
            if not isinstance(flags[flag], bool):
                raise self._fail(400, f"{flag} must be a boolean", f"segment.{flag}")
        with self._lock:
            source = (
                self._segments.get(link)
                if isinstance(link, int) and not isinstance(link, bool)
                else None
            )
            if source is None:
                raise self._fail(
                    400,
                    f"lookalike_link {link!r} is not one of your segments",
                    "segment.lookalike_link",
                )
            if source.info["status"] != "processed":
                raise self._fail(
                    400,
                    f"segment {link} is {source.info['status']}: lookalikes need a processed one",
                    "segment.lookalike_link",
                )
            segment_id = self._next_id
            self._next_id += 1
            info = {
                "id": segment_id,
                "name": name,
                "type": "lookalike",
                "status": "is_processed",
                "lookalike_link": link,
                "lookalike_value": value,
                **flags,
                "create_time": _now_text(),
            }
            self._segments[segment_id] = _Segment(info=info)
            self._schedule(segment_id, lambda: self._finish(segment_id))
            return json_response({"segment": dict(info)})

    def _rename(self, request: Request, segment_id: int) -> Response:
        body = self._segment_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self._fail(400, "segment.name must be a non-empty string", "segment.name")
        with self._lock:
            segment = self._get(segment_id)
            segment.info["name"] = name
            return json_response({"segment": dict(segment.info)})

    def _delete(self, segment_id: int) -> Response:
        with self._lock:
            self._get(segment_id)
            del self._segments[segment_id]
            self._pending.pop(segment_id, None)
            return json_response({"success": True})

    # --- inspection (tests) ----------------------------------------------------------------

    def segment(self, segment_id: int) -> dict[str, Any]:
        """The segment as GET segments shows it; KeyError when absent or deleted."""
        self._advance()
        with self._lock:
            return dict(self._segments[segment_id].info)

    def segment_values(self, segment_id: int, column: str) -> set[str]:
        """A copy of the stored email or phone values."""
        self._advance()
        with self._lock:
            return set(self._segments[segment_id].values[column])

    def segment_columns(self, segment_id: int) -> list[str]:
        with self._lock:
            return list(self._segments[segment_id].columns)

    def segments_named(self, name: str) -> list[dict[str, Any]]:
        self._advance()
        with self._lock:
            return [
                dict(s.info) for _, s in sorted(self._segments.items()) if s.info["name"] == name
            ]

    def modification_count(self, segment_id: int) -> int:
        """Successful modify_data calls on the segment."""
        with self._lock:
            return self._segments[segment_id].modifications

    @property
    def upload_count(self) -> int:
        """Successful upload_csv_file calls."""
        with self._lock:
            return self._uploads
