"""Loopback stub of the VK Ads / myTarget API (base `.../api/`); one class, one instance per
platform.

What it checks, as the real API does (reference: /work/shared/reference/ad-platforms.md):

- `POST v2/oauth2/token.json`, form-encoded: `client_credentials` with a configured
  client_id/client_secret (else 401 `invalid_client`); at most 5 live access tokens per client
  (a 6th -> 403 `token_limit_exceeded`); `refresh_token` (plus client_id/secret) replaces the
  access token of that refresh token, so it does not raise the live count. Tokens expire after
  `token_ttl` seconds.
- Every other call: `Authorization: Bearer <live token>` else 401 `invalid_token`; rate-limit
  headers `X-RateLimit-{RPS,Hourly,Daily}-{Limit,Remaining}` on every reply, 429
  `too_many_requests` with `Retry-After` when over them.
- `POST v3/remarketing/users_lists.json`, multipart: `file`, `name`, `type` (`emails` or
  `phones`) required, optional `base` (N adds to base list N, -N removes from it: N must exist,
  be a base list and have the same type -> `type_mismatch`). File: one value per line, or a
  CSV whose first line is `id`; a blank trailing line is fine; at most 128 MB. Values are all
  MD5 (32 lowercase hex) or all plain, never mixed (`invalid_md5`); plain emails lowercase with
  '@' and a dot in the domain (`invalid_email`), plain phones 11-15 digits without '+'
  (`invalid_phone`); errors list the first 10 bad lines. 2,000..5,000,000 lines
  (`not_enough_ids` / `too_many_ids`), 25..5,000,000 for a differential list (`base`).
- `GET v3/remarketing/users_lists.json?limit=&offset=` (limit at most 200, the default),
  `GET|DELETE v3/remarketing/users_lists/{id}.json`.
- `POST v2/remarketing/segments.json`: name, pass_condition (positive int), non-empty
  relations of `remarketing_users_list` objects whose `params.source_id` is an existing base
  list and `params.type` is positive/negative. `GET v2/remarketing/segments.json`,
  `DELETE v2/remarketing/segments/{id}.json`.
- Optional `quota_per_minute` on list uploads and segment creation (429, `Retry-After: 1`).

Lists go `receiving` -> `ready` after `processing_delay`; the values of a differential list are
applied to its base list at upload time (only the status lags). Errors use
`{"error": {"code", "message", "fields"?}}` with `fields.<name>` a list of
`{"code", "message"}` (per-line file errors add `line_number` and `line`).
"""

from __future__ import annotations

import bisect
import io
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from werkzeug.wrappers import Request, Response

from tests.stubs.base import StubReply, StubServer, json_response, read_json

DEFAULT_CREDENTIALS = {"test-client": "test-secret"}
MAX_LIVE_TOKENS = 5
MIN_IDS = 2_000
MIN_DIFF_IDS = 25
MAX_IDS = 5_000_000
MAX_FILE_BYTES = 128 * 1024 * 1024
MAX_LINE_ERRORS = 10
PAGE_LIMIT = 200

ERROR_CODES = {
    400: "bad_request",
    401: "invalid_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}

_MD5_HEX = re.compile(r"[0-9a-f]{32}")
# list type -> (plain value pattern, error code)
LIST_TYPES = {
    "emails": (re.compile(r"[^\s@A-Z]+@[^\s@A-Z]+\.[^\s@A-Z]+"), "invalid_email"),
    "phones": (re.compile(r"[0-9]{11,15}"), "invalid_phone"),
}


def _now_text() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class UsersFile:
    values: set[str]
    lines: int  # value lines (duplicates included, header and blank lines not)
    errors: list[dict[str, Any]]


def parse_users_file(stream: IO[bytes], list_type: str) -> UsersFile:
    """Validate a users-list file line by line; stops after MAX_LINE_ERRORS bad lines."""
    plain, plain_code = LIST_TYPES[list_type]
    md5 = _MD5_HEX.fullmatch
    plain_ok = plain.fullmatch
    values: set[str] = set()
    errors: list[dict[str, Any]] = []
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=None)
    mode_md5: bool | None = None  # decided by the first value
    csv_header = False
    blank_at: int | None = None
    lines = 0
    try:
        for number, line in enumerate(text, 1):
            value = line.rstrip("\n")
            if number == 1 and value.strip() == "id":
                csv_header = True
                continue
            if not value:
                blank_at = blank_at or number
                continue
            if blank_at is not None:  # blank lines are fine only at the end
                errors.append({"line_number": blank_at, "line": "", "code": plain_code})
                blank_at = None
            if csv_header and len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            lines += 1
            is_md5 = md5(value) is not None
            if mode_md5 is None:
                mode_md5 = is_md5
            if mode_md5 and is_md5 or not mode_md5 and not is_md5 and plain_ok(value):
                values.add(value)
                continue
            code = "invalid_md5" if mode_md5 or is_md5 else plain_code
            errors.append({"line_number": number, "line": value[:200], "code": code})
            if len(errors) >= MAX_LINE_ERRORS:
                break
    finally:
        text.detach()
    return UsersFile(values=values, lines=lines, errors=errors[:MAX_LINE_ERRORS])


@dataclass
class _AccessToken:
    client_id: str
    expires_at: float
    superseded: bool = False

    def live(self, now: float) -> bool:
        return not self.superseded and self.expires_at > now


@dataclass
class _UsersList:
    info: dict[str, Any]
    values: set[str]
    deleted: bool = False


class VkAdsStub(StubServer):
    """VK Ads or myTarget on http://127.0.0.1:<port>/api/ (see the module docstring)."""

    prefix = "/api/"

    def __init__(
        self,
        *,
        credentials: dict[str, str] | None = None,
        token_ttl: float = 86400,
        max_live_tokens: int = MAX_LIVE_TOKENS,
        rps_limit: int = 50,
        hourly_limit: int = 20_000,
        daily_limit: int = 200_000,
        platform: str = "vk",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.credentials = dict(credentials or DEFAULT_CREDENTIALS)
        self.token_ttl = token_ttl
        self.max_live_tokens = max_live_tokens
        self.limits = {
            "RPS": (rps_limit, 1),
            "Hourly": (hourly_limit, 3600),
            "Daily": (daily_limit, 86400),
        }
        self.platform = platform
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, tuple[str, str]] = {}  # refresh token -> (client, access)
        self._tokens_issued = 0
        self._call_times: list[float] = []  # monotonic times of API calls, last day only
        self._lists: dict[int, _UsersList] = {}
        self._segments: dict[int, dict[str, Any]] = {}
        self._next_list_id = 1
        self._next_segment_id = 1
        self._uploads = 0

    # --- errors ----------------------------------------------------------------------------

    def error_body(
        self, status: int, code: str, message: str, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        error: dict[str, Any] = {"code": code, "message": message}
        if fields:
            error["fields"] = fields
        return {"error": error}

    def code_for_status(self, status: int) -> str:
        return ERROR_CODES.get(status, "internal_error")

    def _fail(
        self, status: int, code: str, message: str, fields: dict[str, Any] | None = None
    ) -> StubReply:
        return StubReply(status, self.error_body(status, code, message, fields))

    def _invalid(self, fields: dict[str, list[dict[str, Any]]]) -> StubReply:
        return self._fail(400, "validation_failed", "Validation failed", fields)

    @staticmethod
    def _field_error(code: str, message: str) -> list[dict[str, Any]]:
        return [{"code": code, "message": message}]

    # --- rate limits -----------------------------------------------------------------------

    def _count(self, window: float, now: float) -> int:
        return len(self._call_times) - bisect.bisect_right(self._call_times, now - window)

    def _rate_limit(self) -> None:
        with self._lock:
            now = time.monotonic()
            cut = bisect.bisect_right(self._call_times, now - 86400)
            if cut:
                del self._call_times[:cut]
            for name, (limit, window) in self.limits.items():
                if self._count(window, now) >= limit:
                    body = self.error_body(
                        429, "too_many_requests", f"{name} rate limit of {limit} exceeded"
                    )
                    raise StubReply(429, body, {"Retry-After": "1" if window == 1 else "60"})
            self._call_times.append(now)

    def decorate(self, request: Request, response: Response) -> None:
        with self._lock:
            now = time.monotonic()
            for name, (limit, window) in self.limits.items():
                response.headers[f"X-RateLimit-{name}-Limit"] = str(limit)
                remaining = max(0, limit - self._count(window, now))
                response.headers[f"X-RateLimit-{name}-Remaining"] = str(remaining)

    # --- routing ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if not request.path.startswith(self.prefix):
            raise self._fail(404, "not_found", f"unknown path {request.path}")
        path = request.path[len(self.prefix) :].strip("/")
        method = request.method
        if path == "v2/oauth2/token.json":
            if method != "POST":
                raise self._fail(405, "method_not_allowed", "use POST")
            return self._token(request)
        self._authorize(request)
        self._rate_limit()
        if path == "v3/remarketing/users_lists.json":
            if method == "POST":
                self._take_quota()
                return self._upload(request)
            if method == "GET":
                return self._page(request, [dict(u.info) for u in self._live_lists()], "offset")
        match = re.fullmatch(r"v3/remarketing/users_lists/(\d+)\.json", path)
        if match:
            list_id = int(match.group(1))
            if method == "GET":
                with self._lock:
                    return json_response(dict(self._get_list(list_id).info))
            if method == "DELETE":
                with self._lock:
                    users_list = self._get_list(list_id)
                    users_list.deleted = True
                    users_list.info["status"] = "deleted"
                    self._pending.pop(("list", list_id), None)
                return json_response(None, 204)
        if path == "v2/remarketing/segments.json":
            if method == "POST":
                self._take_quota()
                return self._create_segment(request)
            if method == "GET":
                with self._lock:
                    items = [dict(s) for _, s in sorted(self._segments.items())]
                return self._page(request, items, None)
        match = re.fullmatch(r"v2/remarketing/segments/(\d+)\.json", path)
        if match and method == "DELETE":
            with self._lock:
                if self._segments.pop(int(match.group(1)), None) is None:
                    raise self._fail(404, "not_found", "segment not found")
            return json_response(None, 204)
        raise self._fail(404, "not_found", f"no such method: {method} {request.path}")

    def _page(
        self, request: Request, items: list[dict[str, Any]], offset_key: str | None
    ) -> Response:
        """limit (1..200, default 200; larger values are capped) and offset paging."""
        try:
            limit = int(request.args.get("limit", PAGE_LIMIT))
            offset = int(request.args.get("offset", 0))
        except ValueError:
            raise self._invalid(
                {"limit": self._field_error("invalid", "limit and offset must be integers")}
            ) from None
        if limit < 1 or offset < 0:
            raise self._invalid({"limit": self._field_error("invalid", "limit >= 1, offset >= 0")})
        limit = min(limit, PAGE_LIMIT)
        body: dict[str, Any] = {"items": items[offset : offset + limit], "count": len(items)}
        if offset_key:
            body[offset_key] = offset
        return json_response(body)

    def _authorize(self, request: Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            raise self._fail(
                401, "invalid_token", "Authorization: Bearer <access token> is required"
            )
        with self._lock:
            access = self._access.get(token.strip())
            if access is None:
                raise self._fail(401, "invalid_token", "unknown access token")
            if access.superseded:
                raise self._fail(401, "invalid_token", "the access token was replaced by a refresh")
            if access.expires_at <= time.monotonic():
                raise self._fail(401, "invalid_token", "the access token has expired")

    # --- tokens ----------------------------------------------------------------------------

    def _live_count(self, client_id: str, now: float) -> int:
        return sum(1 for t in self._access.values() if t.client_id == client_id and t.live(now))

    def _issue(self, client_id: str, refresh_token: str, now: float) -> Response:
        access_token = secrets.token_hex(20)
        self._access[access_token] = _AccessToken(client_id, now + self.token_ttl)
        self._refresh[refresh_token] = (client_id, access_token)
        self._tokens_issued += 1
        return json_response(
            {
                "access_token": access_token,
                "token_type": "bearer",
                "expires_in": int(self.token_ttl),
                "refresh_token": refresh_token,
            }
        )

    def _token(self, request: Request) -> Response:
        form = request.form
        grant = form.get("grant_type")
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        if not grant:
            raise self._fail(400, "invalid_request", "grant_type is required (form-encoded body)")
        if grant not in ("client_credentials", "refresh_token"):
            raise self._fail(
                400, "unsupported_grant_type", f"grant_type {grant!r} is not supported"
            )
        if not client_id or not secret:
            raise self._fail(400, "invalid_request", "client_id and client_secret are required")
        if self.credentials.get(client_id) != secret:
            raise self._fail(401, "invalid_client", "unknown client_id or wrong client_secret")
        with self._lock:
            now = time.monotonic()
            if grant == "client_credentials":
                if self._live_count(client_id, now) >= self.max_live_tokens:
                    raise self._fail(
                        403,
                        "token_limit_exceeded",
                        f"client {client_id} already holds {self.max_live_tokens} live tokens: "
                        "reuse or refresh them",
                    )
                return self._issue(client_id, secrets.token_hex(20), now)
            refresh_token = form.get("refresh_token", "")
            owner = self._refresh.get(refresh_token)
            if owner is None or owner[0] != client_id:
                raise self._fail(400, "invalid_grant", "unknown refresh_token")
            old = self._access[owner[1]]
            if old.live(now):
                old.superseded = True
            elif self._live_count(client_id, now) >= self.max_live_tokens:
                raise self._fail(403, "token_limit_exceeded", "too many live tokens")
            old.superseded = True
            return self._issue(client_id, refresh_token, now)

    # --- users lists -----------------------------------------------------------------------

    def _live_lists(self) -> list[_UsersList]:
        with self._lock:
            return [u for _, u in sorted(self._lists.items()) if not u.deleted]

    def _get_list(self, list_id: int) -> _UsersList:
        users_list = self._lists.get(list_id)
        if users_list is None or users_list.deleted:
            raise self._fail(404, "not_found", f"users list {list_id} not found")
        return users_list

    def _upload(self, request: Request) -> Response:
        form, files = request.form, request.files
        fields: dict[str, list[dict[str, Any]]] = {}
        upload = files.get("file")
        if upload is None:
            fields["file"] = self._field_error("required", "multipart field 'file' is required")
        name = form.get("name", "")
        if not name.strip():
            fields["name"] = self._field_error("required", "name is required")
        list_type = form.get("type", "")
        if list_type not in LIST_TYPES:
            code = "required" if not list_type else "invalid_choice"
            fields["type"] = self._field_error(code, f"type must be one of {sorted(LIST_TYPES)}")
        base = 0
        if form.get("base") not in (None, ""):
            try:
                base = int(form["base"])
            except ValueError:
                base = 0
            if base == 0:
                fields["base"] = self._field_error("invalid", "base must be a non-zero integer")
        if fields:
            raise self._invalid(fields)
        if base:
            with self._lock:
                base_list = self._get_list(abs(base))
                if "base" in base_list.info:
                    raise self._invalid(
                        {
                            "base": self._field_error(
                                "not_base_list", f"list {abs(base)} is itself a differential list"
                            )
                        }
                    )
                if base_list.info["type"] != list_type:
                    raise self._invalid(
                        {
                            "base": self._field_error(
                                "type_mismatch",
                                f"list {abs(base)} is {base_list.info['type']}, not {list_type}",
                            )
                        }
                    )
        stream = upload.stream
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        if size > MAX_FILE_BYTES:
            raise self._invalid(
                {"file": self._field_error("file_too_large", "the file is larger than 128 MB")}
            )
        parsed = parse_users_file(stream, list_type)
        if parsed.errors:
            raise self._invalid({"file": parsed.errors})
        minimum = MIN_DIFF_IDS if base else MIN_IDS
        if parsed.lines < minimum:
            raise self._invalid(
                {
                    "file": self._field_error(
                        "not_enough_ids", f"{parsed.lines} lines: at least {minimum} are required"
                    )
                }
            )
        if parsed.lines > MAX_IDS:
            raise self._invalid(
                {
                    "file": self._field_error(
                        "too_many_ids", f"{parsed.lines} lines: at most {MAX_IDS} are allowed"
                    )
                }
            )
        with self._lock:
            if base:
                base_list = self._get_list(abs(base))  # may have been deleted meanwhile
                if base > 0:
                    base_list.values |= parsed.values
                else:
                    base_list.values -= parsed.values
                base_list.info["entries_count"] = len(base_list.values)
            list_id = self._next_list_id
            self._next_list_id += 1
            info: dict[str, Any] = {
                "id": list_id,
                "name": name,
                "type": list_type,
                "status": "receiving",
                "created": _now_text(),
                "entries_count": len(parsed.values),
            }
            if base:
                info["base"] = base
            self._lists[list_id] = _UsersList(info=info, values=parsed.values)
            self._uploads += 1
            self._schedule(("list", list_id), lambda: info.update(status="ready"))
            return json_response(dict(info))

    # --- segments --------------------------------------------------------------------------

    def _create_segment(self, request: Request) -> Response:
        body = read_json(request)
        if not isinstance(body, dict):
            raise self._invalid({"body": self._field_error("invalid", "a JSON object is required")})
        fields: dict[str, list[dict[str, Any]]] = {}
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            fields["name"] = self._field_error("required", "name must be a non-empty string")
        condition = body.get("pass_condition")
        if isinstance(condition, bool) or not isinstance(condition, int) or condition < 1:
            fields["pass_condition"] = self._field_error(
                "invalid", "pass_condition must be a positive integer"
            )
        relations = body.get("relations")
        if not isinstance(relations, list) or not relations:
            fields["relations"] = self._field_error(
                "required", "relations must be a non-empty list"
            )
            relations = []
        with self._lock:
            for index, relation in enumerate(relations):
                where = f"relations.{index}"
                if not isinstance(relation, dict):
                    fields[where] = self._field_error("invalid", "each relation must be an object")
                    continue
                if relation.get("object_type") != "remarketing_users_list":
                    fields[f"{where}.object_type"] = self._field_error(
                        "invalid_choice", "object_type must be remarketing_users_list"
                    )
                params = relation.get("params")
                if not isinstance(params, dict):
                    fields[f"{where}.params"] = self._field_error(
                        "required", "params must be an object"
                    )
                    continue
                source_id = params.get("source_id")
                source = (
                    self._lists.get(source_id)
                    if isinstance(source_id, int) and not isinstance(source_id, bool)
                    else None
                )
                if source is None or source.deleted:
                    fields[f"{where}.params.source_id"] = self._field_error(
                        "not_found", f"users list {source_id!r} not found"
                    )
                elif "base" in source.info:
                    fields[f"{where}.params.source_id"] = self._field_error(
                        "not_base_list", "a segment must reference a base users list"
                    )
                if params.get("type") not in ("positive", "negative"):
                    fields[f"{where}.params.type"] = self._field_error(
                        "invalid_choice", "type must be positive or negative"
                    )
            if fields:
                raise self._invalid(fields)
            segment_id = self._next_segment_id
            self._next_segment_id += 1
            segment = {
                "id": segment_id,
                "name": name,
                "pass_condition": condition,
                "relations": relations,
                "created": _now_text(),
            }
            self._segments[segment_id] = segment
            return json_response(dict(segment))

    # --- inspection (tests) ----------------------------------------------------------------

    def list_values(self, list_id: int) -> set[str]:
        """A copy of the values a list holds (for a differential list: the uploaded ones)."""
        with self._lock:
            return set(self._lists[list_id].values)

    def users_list(self, list_id: int) -> dict[str, Any]:
        """The list object as GET shows it (also after deletion, status "deleted")."""
        self._advance()
        with self._lock:
            return dict(self._lists[list_id].info)

    def lists_named(self, name: str) -> list[dict[str, Any]]:
        self._advance()
        return [dict(u.info) for u in self._live_lists() if u.info["name"] == name]

    def base_lists(self) -> list[dict[str, Any]]:
        self._advance()
        return [dict(u.info) for u in self._live_lists() if "base" not in u.info]

    def segments(self) -> list[dict[str, Any]]:
        """The remarketing segments created, in id order."""
        with self._lock:
            return [dict(s) for _, s in sorted(self._segments.items())]

    @property
    def upload_count(self) -> int:
        """Successful users-list uploads (base and differential)."""
        with self._lock:
            return self._uploads

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return self._tokens_issued

    def live_tokens(self, client_id: str) -> int:
        """Access tokens of the client that are neither expired nor replaced by a refresh."""
        with self._lock:
            return self._live_count(client_id, time.monotonic())

    def expire_tokens(self) -> None:
        """Make every access token expire now (refresh tokens stay valid)."""
        with self._lock:
            now = time.monotonic()
            for token in self._access.values():
                token.expires_at = min(token.expires_at, now)
