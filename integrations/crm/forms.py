"""What the CRMs' webhooks share: PHP-style nested form bodies (``data[FIELDS][ID]=1``,
``contacts[add][0][name]=...``) turned into nested dicts and lists, and the small helpers that map
their fields to ingestion records. Pure: no Django model, no database."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext as _

from agency.errors import ServiceError

# The deal states every CRM mapping answers (clients.models.CrmDeal.Status has the same values).
DEAL_OPEN = "open"
DEAL_WON = "won"
DEAL_LOST = "lost"

# PHP-style form parsing

MAX_KEY_DEPTH = 32  # PHP's max_input_nesting_level is 64; CRM payloads need 7
_BRACKETED_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])+)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class FormParseError(ServiceError, ValueError):
    """A form key nested deeper than :data:`MAX_KEY_DEPTH`."""

    default_code = "invalid_body"

    def __init__(self, message: str):
        super().__init__(message=message)


def _key_segments(key: str) -> list[str]:
    """``a[b][0][]`` -> ``["a", "b", "0", ""]``; a key not of that form is one plain name."""
    match = _BRACKETED_KEY.fullmatch(key)
    if match is None:
        return [key]
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def _next_index(node: dict[str, Any]) -> str:
    """PHP's ``a[]=``: one past the largest integer key so far."""
    indexes = [int(k) for k in node if k.isdigit()]
    return str(max(indexes) + 1) if indexes else "0"


def _pairs(data: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    if isinstance(data, MultiValueDict):  # a form: every value of a repeated key, in order
        for key, values in data.lists():
            for value in values:
                yield key, value
    else:  # a JSON object: lists are values, not repeats
        for key, value in data.items():
            yield key, copy.deepcopy(value)


def _listify(value: Any) -> Any:
    """Objects keyed exactly 0..n-1 become lists, as PHP's json_encode writes them."""
    if isinstance(value, dict):
        items = {key: _listify(item) for key, item in value.items()}
        if items and set(items) == {str(i) for i in range(len(items))}:
            return [items[str(i)] for i in range(len(items))]
        return items
    if isinstance(value, list):
        return [_listify(item) for item in value]
    return value


def parse_php_form(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat bracketed keys -> nested dicts and lists, the way PHP builds ``$_POST``.

    ``a[b][0][c]=x`` gives ``{"a": {"b": [{"c": "x"}]}}``. As in PHP: a repeated key keeps its
    last value, ``a[]`` appends, and a later key replaces an earlier value it has to nest into.
    Objects keyed 0..n-1 become lists (what ``json_encode($_POST)`` would show), so a form body
    and a JSON body of the same shape map through the same code. Keys that are not of the
    bracketed form are kept as they are; JSON values pass through unchanged.

    Written here rather than taken from a library: the port of JS ``qs`` (qs-codec) differs from
    PHP where CRM payloads need it (depth limit 5, repeated keys combined into lists, list
    indexes over 20 turned into object keys).
    """
    root: dict[str, Any] = {}
    for key, value in _pairs(data):
        segments = _key_segments(str(key))
        if len(segments) > MAX_KEY_DEPTH:
            raise FormParseError(
                _("ключ вложен глубже %(levels)s уровней: %(key)s")
                % {"levels": MAX_KEY_DEPTH, "key": repr(key[:100])}
            )
        node = root
        for segment in segments[:-1]:
            if segment == "":
                segment = _next_index(node)
            child = node.get(segment)
            if not isinstance(child, dict):
                child = node[segment] = {}
            node = child
        last = segments[-1]
        node[_next_index(node) if last == "" else last] = value
    return _listify(root)


# --------------------------------------------------------------------------------------------
# Small readers shared by both mappings


def as_list(value: Any) -> list[Any]:
    """A list, or an object keyed by indexes or ids (``{"5": ...}``), as a list of its values."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return []


def as_text(value: Any) -> str:
    """A scalar as stripped text; anything else (missing, an object) as ""."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()


def unix_to_iso(value: Any) -> str | None:
    """amoCRM sends Unix timestamps; the pipeline reads ISO 8601. Garbage is passed on as it
    is, so that the pipeline rejects the row with its reason instead of us guessing."""
    text = as_text(value)
    if not text:
        return None
    if not text.isdigit():
        return text
    try:
        return datetime.fromtimestamp(int(text), tz=UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # beyond the years datetime can hold
        return text


def skipped(entity: str, entity_id: Any, reason: str) -> dict[str, str]:
    return {"entity": entity, "id": as_text(entity_id), "reason": reason}


def without_blanks(record: dict[str, Any]) -> dict[str, Any]:
    """A field the CRM did not send is left out: the pipeline then keeps the stored value."""
    return {key: value for key, value in record.items() if value not in (None, "")}


def empty_records() -> dict[str, list[dict[str, Any]]]:
    return {"customers": [], "deals": [], "links": [], "skipped": []}
