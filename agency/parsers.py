"""The one reader of request bodies and parameters for the whole API: what the database cannot
store never gets past it.

PostgreSQL refuses NUL characters in text and in ``jsonb`` (``\\u0000``), and lone UTF-16
surrogates ("\\ud800") cannot be encoded at all; Python's JSON decoder raises RecursionError
(a 500) on a body nested about a thousand levels deep, and reads ``1e400`` as infinity, which
``jsonb`` and the JSON renderer refuse. So:

- :func:`json_loads_checked` reads JSON text and refuses, naming each one by its JSON path
  (``$[3].attributes.note``), values nested deeper than :data:`MAX_JSON_DEPTH`, NUL characters
  and lone surrogates in keys and strings, and numbers beyond a double. The DRF parser
  :class:`JSONParser` (``DEFAULT_PARSER_CLASSES``) answers those as 400 ``invalid_json_value``;
  a batch endpoint turns the faults inside its records into row errors instead
  (``clients.bulk``), and CSV cells holding JSON are read by the same function
  (``clients.ingest``).
- :class:`FormParser` and :class:`MultiPartParser` refuse such characters in form fields;
  :class:`~agency.middleware.QueryTextMiddleware` refuses them in query parameters.
- :func:`parse_moment` is the one reading of a date-time given as text in a parameter or a field
  (ISO 8601 or a date; a time without offset is in the given zone): impossible dates and UTC
  offsets beyond ±15:59 (PostgreSQL's limit) are refused with a reason.
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.functional import lazy
from django.utils.translation import gettext, gettext_lazy
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .errors import ServiceError

MAX_JSON_DEPTH = 64  # levels of arrays and objects; CRM payloads need 7, rule trees about 10
PROBLEMS_SHOWN = 20  # faults listed in one 400 reply

# The characters no text column can hold: NUL and the UTF-16 surrogate halves.
FORBIDDEN_TEXT_RE = re.compile("[\x00\ud800-\udfff]")
# In raw JSON text, the escapes that can make them (a cheap test before looking at strings).
_SUSPECT_ESCAPE_RE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")

# Reasons in the active language (lazy: read when a problem is reported).
NUL_MESSAGE = gettext_lazy("недопустимый символ NUL (\\u0000)")
SURROGATE_MESSAGE = gettext_lazy("недопустимый символ: одиночный суррогат UTF-16 (\\ud800–\\udfff)")
TOO_DEEP_MESSAGE = lazy(
    lambda: gettext("вложенность глубже %(levels)s уровней") % {"levels": MAX_JSON_DEPTH}, str
)()
NUMBER_MESSAGE = gettext_lazy("число вне диапазона")


def forbidden_text(value: str) -> tuple[str, str] | None:
    """``(code, reason)`` when ``value`` holds a character no text column can store, else None."""
    found = FORBIDDEN_TEXT_RE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "nul_character", NUL_MESSAGE
    return "lone_surrogate", SURROGATE_MESSAGE


def printable(value: str) -> str:
    """``value`` with its forbidden characters written as escapes (safe to store and show)."""
    return FORBIDDEN_TEXT_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


# --------------------------------------------------------------------------------------------
# JSON

Path = tuple[str | int, ...]


def json_path(path: Iterable[str | int], root: str = "$") -> str:
    """``("rows", 3, "a.b")`` -> ``$.rows[3]["a.b"]``."""
    out = root
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            quoted = printable(part.replace("\\", "\\\\").replace('"', '\\"'))
            out += f'["{quoted}"]'
    return out


@dataclass(frozen=True)
class JsonProblem:
    """One value a JSON document may not carry: where (a path of keys and indexes), a stable
    code (``too_deep``, ``nul_character``, ``lone_surrogate``, ``number_out_of_range``) and
    the reason."""

    path: Path
    code: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", str(self.message))  # in the active language


class JsonContentError(ServiceError):
    """A JSON document with values the platform cannot store: 400 ``invalid_json_value``,
    naming the first fault's path in ``field`` and listing the faults in ``errors`` as DRF's
    validation errors are shaped (``{"$.name": ["reason"]}``).

    ``data`` is the document as read, with each value nested too deep replaced by None (a batch
    endpoint rejects the records that hold a fault and keeps the others)."""

    default_code = "invalid_json_value"

    def __init__(self, problems: list[JsonProblem], data: Any = None) -> None:
        first = problems[0]
        where = json_path(first.path)
        more = gettext(" (и ещё %(n)s)") % {"n": len(problems) - 1} if len(problems) > 1 else ""
        super().__init__(
            message=gettext("Недопустимое значение в JSON: %(where)s: %(reason)s%(more)s.")
            % {"where": where, "reason": first.message, "more": more},
            field=where,
            extra={"errors": _by_path(problems[:PROBLEMS_SHOWN])},
        )
        self.problems = problems
        self.data = data


def _by_path(problems: list[JsonProblem]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for problem in problems:
        errors.setdefault(json_path(problem.path), []).append(problem.message)
    return errors


class _OutOfRange(float):
    """A JSON number a double cannot hold (``1e400``): kept as a marker until it is reported."""


def _strict_constant(name: str) -> Any:
    raise ValueError(gettext("%(name)s не является числом JSON") % {"name": name})


# Tokens that matter for nesting: strings (skipped whole) and the structural characters.
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.S)


def _cut_too_deep(text: str, limit: int) -> tuple[str, list[Path]]:
    """``text`` with every array or object that opens deeper than ``limit`` replaced by
    ``null``, and the paths of those values. Only called when the decoder gave up on the depth,
    so it is a plain loop over the tokens."""
    stack: list[list[Any]] = []  # per open container: [is_object, key or index, expecting_key]
    pieces: list[str] = []
    paths: list[Path] = []
    copied = 0
    skip_from = -1  # offset of the value being cut, while inside it
    skip_depth = 0
    for match in _TOKEN_RE.finditer(text):
        mark = match.group()
        if skip_from >= 0:
            if mark in "[{":
                skip_depth += 1
            elif mark in "]}":
                skip_depth -= 1
                if skip_depth == 0:
                    pieces.append(text[copied:skip_from])
                    pieces.append("null")
                    copied = match.end()
                    skip_from = -1
            continue
        if mark in "[{":
            if len(stack) >= limit:
                paths.append(tuple(frame[1] for frame in stack))
                skip_from, skip_depth = match.start(), 1
                continue
            stack.append([mark == "{", None if mark == "{" else 0, mark == "{"])
        elif mark in "]}":
            if stack:
                stack.pop()
        elif mark == ",":
            if stack:
                frame = stack[-1]
                if frame[0]:
                    frame[2] = True
                else:
                    frame[1] += 1
        elif mark == ":":
            if stack:
                stack[-1][2] = False
        elif stack and stack[-1][0] and stack[-1][2]:  # a key
            try:
                stack[-1][1] = json.loads(mark)
            except ValueError:
                stack[-1][1] = mark.strip('"')
    if skip_from >= 0:  # unterminated: the decoder will say so
        return text, paths
    pieces.append(text[copied:])
    return "".join(pieces), paths


def _within_depth(node: Any, depth: int, limit: int) -> bool:
    """No array or object inside ``node`` (at ``depth``) opens deeper than ``limit``: the quick
    test every document passes through (paths are looked for only when it fails)."""
    for item in node.values() if type(node) is dict else node:
        if type(item) is dict or type(item) is list:
            if depth >= limit or not _within_depth(item, depth + 1, limit):
                return False
    return True


def _find_problems(value: Any, *, limit: int, strings: bool, numbers: bool) -> list[JsonProblem]:
    """Walk the decoded document: containers deeper than ``limit`` (replaced by None in place),
    and when asked, forbidden characters in keys and strings and out-of-range numbers."""
    problems: list[JsonProblem] = []
    containers = type(value) is dict or type(value) is list
    if not (strings or numbers) and (not containers or _within_depth(value, 1, limit)):
        return problems

    def scalar(item: Any, path: Path) -> None:
        if strings and type(item) is str:
            found = forbidden_text(item)
            if found:
                problems.append(JsonProblem(path, *found))
        elif numbers and type(item) is _OutOfRange:
            problems.append(JsonProblem(path, "number_out_of_range", NUMBER_MESSAGE))

    def walk(node: Any, path: Path, depth: int) -> None:
        if type(node) is dict:
            for key, item in node.items():
                if strings:
                    found = forbidden_text(key)
                    if found:
                        problems.append(JsonProblem((*path, key), *found))
                if type(item) is dict or type(item) is list:
                    if depth >= limit:
                        problems.append(JsonProblem((*path, key), "too_deep", TOO_DEEP_MESSAGE))
                        node[key] = None
                    else:
                        walk(item, (*path, key), depth + 1)
                elif strings or numbers:
                    scalar(item, (*path, key))
        else:
            for index, item in enumerate(node):
                if type(item) is dict or type(item) is list:
                    if depth >= limit:
                        problems.append(JsonProblem((*path, index), "too_deep", TOO_DEEP_MESSAGE))
                        node[index] = None
                    else:
                        walk(item, (*path, index), depth + 1)
                elif strings or numbers:
                    scalar(item, (*path, index))

    if type(value) is dict or type(value) is list:
        walk(value, (), 1)
    else:
        scalar(value, ())
    return problems


def json_loads_checked(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode JSON text as the API reads it. Malformed text raises ValueError (with the
    decoder's reason); a well-formed document with values the platform cannot store raises
    :class:`JsonContentError` listing them by path (its ``data`` is the rest, readable)."""
    suspect = _SUSPECT_ESCAPE_RE.search(text) is not None
    big_numbers: list[float] = []

    def parse_float(number: str) -> float:
        value = float(number)
        if math.isfinite(value):
            return value
        big_numbers.append(value)
        return _OutOfRange(value)

    decoder = json.JSONDecoder(parse_float=parse_float, parse_constant=_strict_constant)
    cut: list[Path] = []
    try:
        data = decoder.decode(text)
    except RecursionError:
        text, cut = _cut_too_deep(text, max_depth)
        try:
            data = decoder.decode(text)
        except RecursionError as exc:  # not cut (malformed): refused as a whole
            raise ValueError(gettext("JSON вложен слишком глубоко и не читается")) from exc
    problems = [JsonProblem(path, "too_deep", TOO_DEEP_MESSAGE) for path in cut]
    problems += _find_problems(data, limit=max_depth, strings=suspect, numbers=bool(big_numbers))
    if problems:
        problems.sort(key=lambda p: [(0, x) if isinstance(x, int) else (1, x) for x in p.path])
        raise JsonContentError(problems, data)
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser reading through :func:`json_loads_checked`: 400 ``parse_error`` for
    malformed JSON, 400 ``invalid_json_value`` (with paths) for what cannot be stored."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(
                gettext("Тело запроса не в кодировке %(encoding)s: %(error)s")
                % {"encoding": encoding, "error": exc}
            ) from exc
        try:
            return json_loads_checked(text)
        except ValueError as exc:
            raise ParseError(gettext("Некорректный JSON: %(error)s") % {"error": exc}) from exc


def check_form_text(data: Any) -> None:
    """Refuse (400 ``invalid_parameter``, naming it) a key or value of a parsed form or query
    string holding a character no text column can store."""
    for key, values in data.lists():
        for text in (key, *values):
            if isinstance(text, str) and (found := forbidden_text(text)):
                raise ServiceError(
                    found[0],
                    gettext("Параметр %(name)s: %(reason)s.")
                    % {"name": printable(key)[:100], "reason": found[1]},
                    field=printable(key)[:100],
                )


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        check_form_text(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        check_form_text(parsed.data)
        return parsed


# --------------------------------------------------------------------------------------------
# Date-times given as text

MAX_UTC_OFFSET = dt.timedelta(hours=15, minutes=59)  # PostgreSQL's timestamptz limit
DATETIME_FORMAT_HINT = gettext_lazy(
    "ожидается дата-время ISO 8601, например 2024-05-31T14:30:00+03:00"
)


def parse_moment(value: Any, tz: dt.tzinfo | None = None) -> dt.datetime:
    """An aware date-time from ISO 8601 text (a date alone is its midnight); a time without an
    offset is read in ``tz`` (the current time zone by default). Raises ValueError with a reason
    for anything else: garbage, impossible dates (month 13), offsets beyond ±15:59."""
    text = value.strip() if isinstance(value, str) else ""
    if not text or FORBIDDEN_TEXT_RE.search(text) or not text.isascii():
        raise ValueError(str(DATETIME_FORMAT_HINT))
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            moment = dt.datetime.combine(day, dt.time.min) if day else None
    except ValueError as exc:  # well formed but impossible
        raise ValueError(
            gettext("несуществующая дата или время: %(value)s") % {"value": text[:40]}
        ) from exc
    if moment is None:
        raise ValueError(str(DATETIME_FORMAT_HINT))
    offset = moment.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        raise ValueError(gettext("смещение часового пояса вне ±15:59"))
    if timezone.is_naive(moment):
        try:
            moment = timezone.make_aware(moment, tz or timezone.get_current_timezone())
        except (OverflowError, ValueError) as exc:
            raise ValueError(
                gettext("несуществующая дата или время: %(value)s") % {"value": text[:40]}
            ) from exc
    return moment


def query_moment(params: Any, name: str, tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """The date-time query parameter ``name`` (None when absent), or 400 ``invalid_filter``
    naming the parameter."""
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return parse_moment(raw, tz)
    except ValueError as exc:
        raise ServiceError("invalid_filter", f"{name}: {exc}", field=name) from exc
