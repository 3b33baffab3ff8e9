"""One bulk-request envelope and one row-error shape for every batch endpoint of the API:
customers, orders and events (``clients.api``) and consents (``consent.api``).

Request: the body is a JSON array of records, at most ``settings.BULK_MAX_RECORDS`` of them
(more: 413 ``too_many_records``; not an array: 400 ``invalid_body``). A value the platform
cannot store inside a record (nested deeper than ``agency.parsers.MAX_JSON_DEPTH``, a NUL
character, a lone surrogate, a number beyond a double) rejects that record only, as a row error
naming the field (``attributes.note``) with the parser's code (``too_deep``, ``nul_character``,
``lone_surrogate``, ``number_out_of_range``); elsewhere in the API it is a 400.
``?partial=true`` (also ``1``/``yes``) accepts the good rows and reports the bad ones; without
it the batch is all or nothing: one bad row and nothing is written.

Reply: 200 when the batch was committed, 422 ``invalid_rows`` (with ``code`` and ``message``)
when nothing was written. Either way the body has ``committed``, ``total``, ``created``,
``rejected`` (rows, not errors) and ``errors``, plus counts of its own kind (``updated``;
``records``), and every row error has one shape, :class:`RowError`:
``{"index", "field", "code", "message", "value"}`` — ``index`` is the 0-based position of the
record in the batch, ``field`` the input field at fault ("" for the record as a whole,
``evidence.ip`` for a nested one), ``code`` a stable machine-readable code (``required``,
``unknown_field``, ``invalid_row``, ``invalid_email``, ``unknown_customer``, ...), ``message``
the reason in the request's language (Russian by default, English with ``Accept-Language: en``;
the same words for the same fault), ``value`` the offending value (cut to 200 characters) or "".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agency.api import ApiError
from agency.parsers import JsonContentError, JsonProblem, json_path

# What the endpoints say alike about the same fault of a record (in the active language).
NOT_AN_OBJECT = gettext_lazy("запись — не JSON-объект")
UNKNOWN_FIELD = gettext_lazy("неизвестное поле")
REQUIRED = gettext_lazy("обязательное поле")
VALUE_SHOWN = 200  # characters of the offending value echoed in ``value``


@dataclass(frozen=True)
class RowError:
    """One reason a record of a batch was rejected. For a CSV file ``index`` is the
    spreadsheet row number instead (header = 1). ``code`` is given where the fault is found
    and never derived from ``message``, which is in the active language (a lazy message is
    read here, in the language of the request or, for a job, the site's)."""

    index: int
    field: str
    code: str
    message: str
    value: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", str(self.message))

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "field": self.field,
            "code": self.code,
            "message": self.message,
            "value": self.value,
        }


class BulkRequest(NamedTuple):
    items: list[Any]
    partial: bool


class RejectedRow:
    """A record of the batch already rejected while the body was read: its errors. The row
    validators report them as they are and look no further."""

    __slots__ = ("errors",)

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors


def _row_error(problem: JsonProblem) -> RowError:
    index, *inside = problem.path
    field = json_path(inside, root="")[:VALUE_SHOWN]
    return RowError(int(index), field, problem.code, problem.message)


def request_json(request: Request) -> Any:
    """The request's JSON body, where a body that is an array keeps the records whose values
    cannot be stored as :class:`RejectedRow` (so the others can still be accepted). Any other
    fault of the body raises as it would anywhere in the API (400)."""
    cached = getattr(request, "_bulk_json", None)
    if cached is not None:
        return cached[0]
    try:
        data = request.data
    except JsonContentError as exc:
        if not isinstance(exc.data, list):
            raise
        by_row: dict[int, list[RowError]] = {}
        for problem in exc.problems:
            if not (problem.path and isinstance(problem.path[0], int)):
                raise
            by_row.setdefault(problem.path[0], []).append(_row_error(problem))
        data = [RejectedRow(by_row[i]) if i in by_row else item for i, item in enumerate(exc.data)]
    request._bulk_json = (data,)
    return data


def bulk_partial(request: Request) -> bool:
    """Did the caller ask for partial acceptance (``?partial=true``)?"""
    return request.query_params.get("partial", "").lower() in ("1", "true", "yes")


def bulk_request(request: Request) -> BulkRequest:
    """The records of a bulk request and its mode, or an ApiError for a malformed envelope."""
    items = request_json(request)
    if not isinstance(items, list):
        raise ApiError("invalid_body", _("Тело запроса — JSON-массив записей."))
    if len(items) > settings.BULK_MAX_RECORDS:
        raise ApiError(
            "too_many_records",
            _("Не больше %(max)s записей за запрос, получено %(n)s.")
            % {"max": settings.BULK_MAX_RECORDS, "n": len(items)},
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return BulkRequest(items=items, partial=bulk_partial(request))


def bulk_response(body: dict[str, Any]) -> Response:
    """200 for a committed batch; 422 ``invalid_rows`` when nothing was written."""
    if body["committed"]:
        return Response(body, status=status.HTTP_200_OK)
    body = {
        "code": "invalid_rows",
        "message": _(
            "Отклонено записей: %(n)s; ничего не записано. Исправьте их или отправьте с "
            "?partial=true."
        )
        % {"n": body["rejected"]},
        **body,
    }
    return Response(body, status=status.HTTP_422_UNPROCESSABLE_ENTITY)


# --------------------------------------------------------------------------------------------
# The documented shape (drf-spectacular)


class BulkRowErrorSerializer(serializers.Serializer):
    """Ошибка записи пакета — одна форма для покупателей, заказов, событий и согласий."""

    index = serializers.IntegerField(help_text="Позиция записи в пакете, с 0")
    field = serializers.CharField(help_text="Поле записи; пусто — запись целиком")
    code = serializers.CharField(
        help_text="required, unknown_field, invalid_row, unknown_customer, invalid_email, …"
    )
    message = serializers.CharField(help_text="Причина")
    value = serializers.CharField(help_text="Отклонённое значение (до 200 символов)")


PARTIAL_PARAMETER = OpenApiParameter(
    "partial",
    OpenApiTypes.BOOL,
    description="true — принять корректные записи, остальные вернуть в errors; "
    "по умолчанию пакет — всё или ничего",
)


def bulk_result_schema(name: str, **fields: serializers.Field) -> serializers.Serializer:
    """The reply of a bulk endpoint: the common counts, ``fields`` of its own, the row errors;
    ``code`` and ``message`` only on a 422."""
    return inline_serializer(
        name,
        fields={
            "code": serializers.CharField(required=False, help_text="invalid_rows (422)"),
            "message": serializers.CharField(required=False),
            "committed": serializers.BooleanField(help_text="Записано ли что-нибудь"),
            "total": serializers.IntegerField(),
            "created": serializers.IntegerField(),
            **fields,
            "rejected": serializers.IntegerField(help_text="Отклонено записей"),
            "errors": BulkRowErrorSerializer(many=True),
        },
    )
