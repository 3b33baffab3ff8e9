"""``GET /api/v1/kpis/?from=YYYY-MM&to=YYYY-MM``: the client's stored KPIs per month
(``reports.kpis``: definitions there), oldest first. Figures the client's tier does not include
are null and named in ``hidden`` with the reason. Bad months are a 400 JSON error naming the
parameter."""

from __future__ import annotations

import datetime as dt
import re

from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api import ApiError, request_client
from clients.api import ClientAccessPermission

from ..kpis import FIGURES, kpi_months
from ..models import KpiMonth

TAGS = ["reports"]
MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
DEFAULT_MONTHS = 12


class KpiMonthSerializer(serializers.ModelSerializer):
    month = serializers.CharField(help_text="YYYY-MM")

    class Meta:
        model = KpiMonth
        fields = ["month", *FIGURES, "computed_at"]
        read_only_fields = fields


KPI_RESPONSE = inline_serializer(
    "KpiResponse",
    fields={
        "from": serializers.CharField(help_text="YYYY-MM"),
        "to": serializers.CharField(help_text="YYYY-MM"),
        "currency": serializers.CharField(default="RUB"),
        "months": KpiMonthSerializer(many=True),
        "hidden": serializers.DictField(
            child=serializers.CharField(),
            help_text="Показатели, скрытые тарифом клиента: {показатель: причина}.",
        ),
    },
)
ERROR_BODY = inline_serializer(
    "KpiErrorBody",
    fields={
        "code": serializers.CharField(help_text="invalid_month, invalid_range"),
        "message": serializers.CharField(),
        "field": serializers.CharField(help_text="from | to"),
    },
)


def _month(value: str, name: str) -> dt.date:
    match = MONTH_RE.match(value)
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
        raise ApiError(
            "invalid_month",
            _("%(name)s: месяц в виде ГГГГ-ММ, например 2026-01.") % {"name": name},
            field=name,
        )
    return dt.date(int(match[1]), int(match[2]), 1)


def _months_before(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 - count
    return dt.date(index // 12, index % 12 + 1, 1)


class KpiListView(APIView):
    """The client's KPIs per month."""

    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="kpis_list",
        summary=_("KPI клиента по месяцам"),
        description=(
            "Месяцы часового пояса клиента, от старых к новым. По умолчанию — последние 12 "
            "месяцев. Деньги — рубли (строки с 2 знаками), доли — от 0 до 1. null — "
            "знаменатель равен нулю или неизвестен (например, расход не загружен), либо "
            "показатель скрыт тарифом (тогда он есть в hidden)."
        ),
        parameters=[
            OpenApiParameter("from", OpenApiTypes.STR, description="YYYY-MM, включительно"),
            OpenApiParameter("to", OpenApiTypes.STR, description="YYYY-MM, включительно"),
        ],
        responses={200: KPI_RESPONSE, 400: ERROR_BODY},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        client = request_client(request)
        params = request.query_params
        if params.get("to"):
            until = _month(params["to"], "to")
        else:
            until = timezone.localtime(timezone.now(), client.tzinfo).date().replace(day=1)
        if params.get("from"):
            since = _month(params["from"], "from")
        else:
            since = _months_before(until, DEFAULT_MONTHS - 1)
        if since > until:
            raise ApiError("invalid_range", _("from не может быть позже to."), field="from")
        rows, hidden = kpi_months(client=client, since=since, until=until)
        return Response(
            {
                "from": f"{since:%Y-%m}",
                "to": f"{until:%Y-%m}",
                "currency": "RUB",
                "months": KpiMonthSerializer(rows, many=True).data,
                "hidden": hidden,
            }
        )


urlpatterns = [path("kpis/", KpiListView.as_view(), name="kpis")]
