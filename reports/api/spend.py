"""Spend API: ``GET /api/v1/spend/?from=&to=`` (daily rows of every source and the totals) and
``POST /api/v1/spend/upload/`` (a CSV file of spend, multipart field ``file``)."""

from __future__ import annotations

import datetime as dt

from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api import ApiError, request_client
from agency.audit import request_ip
from clients.api import ClientAccessPermission
from clients.bulk import BulkRowErrorSerializer

from ..models import SpendDay
from ..spend import SPEND_CSV_OPTIONAL, SPEND_CSV_REQUIRED, spend_csv_upload, spend_daily

TAGS = ["spend"]
MAX_PERIOD_DAYS = 366
DEFAULT_PERIOD_DAYS = 30

ERROR_BODY = inline_serializer(
    "SpendError",
    fields={
        "code": serializers.CharField(),
        "message": serializers.CharField(),
        "field": serializers.CharField(required=False),
    },
)


class SpendDaySerializer(serializers.ModelSerializer):
    class Meta:
        model = SpendDay
        fields = [
            "day",
            "source",
            "campaign",
            "campaign_name",
            "channel",
            "cost",
            "clicks",
            "impressions",
            "visits",
            "leads",
            "sales",
            "revenue",
            "imported_at",
        ]


class SpendTotalsSerializer(serializers.Serializer):
    cost = serializers.DecimalField(max_digits=16, decimal_places=2)
    clicks = serializers.IntegerField()
    impressions = serializers.IntegerField()
    visits = serializers.IntegerField()
    leads = serializers.IntegerField()
    sales = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=16, decimal_places=2)


class SpendListSerializer(serializers.Serializer):
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    rows = SpendDaySerializer(many=True)
    totals = SpendTotalsSerializer()
    per_source = serializers.DictField(child=SpendTotalsSerializer())

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["from"] = data.pop("date_from")
        data["to"] = data.pop("date_to")
        return data


class SpendUploadResultSerializer(serializers.Serializer):
    rows_total = serializers.IntegerField()
    rows_ok = serializers.IntegerField()
    rows_rejected = serializers.IntegerField()
    days = serializers.ListField(child=serializers.DateField())
    written = serializers.IntegerField()
    errors = BulkRowErrorSerializer(many=True)


def _query_day(request: Request, name: str, default: dt.date) -> dt.date:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(
            "invalid_filter",
            _("%(name)s: дата в формате ГГГГ-ММ-ДД.") % {"name": name},
            field=name,
        ) from None


class SpendListView(APIView):
    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="spend_list",
        summary=_("Расходы по дням за период (все источники) и итоги"),
        parameters=[
            OpenApiParameter(
                "from", OpenApiTypes.DATE, description=_("по умолчанию 30 дней назад")
            ),
            OpenApiParameter("to", OpenApiTypes.DATE, description=_("по умолчанию сегодня")),
        ],
        responses={200: SpendListSerializer, 400: OpenApiResponse(ERROR_BODY)},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        client = request_client(request)
        today = timezone.localdate(timezone=client.tzinfo)
        date_to = _query_day(request, "to", today)
        date_from = _query_day(
            request, "from", date_to - dt.timedelta(days=DEFAULT_PERIOD_DAYS - 1)
        )
        if date_from > date_to:
            raise ApiError("invalid_filter", _("from позже to."), field="from")
        if (date_to - date_from).days >= MAX_PERIOD_DAYS:
            raise ApiError(
                "invalid_filter",
                _("Период — не больше %(n)s дней.") % {"n": MAX_PERIOD_DAYS},
                field="from",
            )
        data = spend_daily(client=client, date_from=date_from, date_to=date_to)
        return Response(
            SpendListSerializer({"date_from": date_from, "date_to": date_to, **data}).data
        )


class SpendUploadView(APIView):
    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="spend_upload",
        summary=_("Загрузка расходов из CSV (день заменяется строками файла)"),
        description=_(
            "Поле file (multipart): CSV в UTF-8, разделитель «,» или «;». Обязательные "
            "столбцы: %(required)s; необязательные: %(optional)s. Ошибки — по строкам (номер "
            "строки файла, заголовок — 1), хорошие строки записываются."
        )
        % {"required": ", ".join(SPEND_CSV_REQUIRED), "optional": ", ".join(SPEND_CSV_OPTIONAL)},
        request={
            "multipart/form-data": inline_serializer(
                "SpendUploadInput", fields={"file": serializers.FileField()}
            )
        },
        responses={
            200: SpendUploadResultSerializer,
            400: OpenApiResponse(ERROR_BODY),
            422: OpenApiResponse(SpendUploadResultSerializer, description="invalid_rows"),
        },
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        client = request_client(request)
        upload = request.FILES.get("file")
        if upload is None:
            raise ApiError(
                "file_required", _("Приложите CSV-файл в поле file (multipart)."), field="file"
            )
        result = spend_csv_upload(
            client=client,
            content=upload.read(),
            actor=request.user,
            source="api",
            ip=request_ip(request),
        )
        body = SpendUploadResultSerializer(result.as_dict()).data
        if result.rows_ok == 0:
            return Response(
                {"code": "invalid_rows", "message": str(_("Ни одной годной строки.")), **body},
                status=422,
            )
        return Response(body)


urlpatterns = [
    path("spend/", SpendListView.as_view(), name="spend-list"),
    path("spend/upload/", SpendUploadView.as_view(), name="spend-upload"),
]
