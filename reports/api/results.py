"""Chain results and the month roll-up: ``GET /api/v1/chains/{id}/results/?from=&to=`` and
``GET /api/v1/reports/triggered-revenue/?month=YYYY-MM``.

Both read ``reports.results``; the chain is looked up among the request's client's chains only
(another client's chain is the same JSON 404 as a missing one). A malformed date or a period
that ends before it starts is a 400 with the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api import ApiError, ClientScopedViewSetMixin, request_client
from campaigns.models import TriggerChain
from clients.api import ClientAccessPermission

from ..results import chain_results, client_month_rollup

TAGS = ["reports"]

ERROR_BODY = inline_serializer(
    "ReportsResultsErrorBody",
    fields={
        "code": serializers.CharField(help_text="invalid_date, invalid_period, not_found"),
        "message": serializers.CharField(),
        "field": serializers.CharField(required=False),
    },
)

_ARM = inline_serializer(
    "ChainResultsArm",
    fields={
        "n": serializers.IntegerField(),
        "conversions": serializers.IntegerField(),
        "conversion_rate": serializers.FloatField(allow_null=True),
        "revenue": serializers.DecimalField(max_digits=16, decimal_places=2),
        "revenue_per_person": serializers.DecimalField(
            max_digits=16, decimal_places=2, allow_null=True
        ),
    },
)
_CI = serializers.ListField(child=serializers.FloatField(), allow_null=True)
_UPLIFT = inline_serializer(
    "ChainResultsUplift",
    fields={
        "absolute": serializers.FloatField(allow_null=True),
        "absolute_ci": _CI,
        "relative": serializers.FloatField(allow_null=True),
        "relative_ci": _CI,
        "p_value": serializers.FloatField(allow_null=True),
        "incremental_conversions": serializers.FloatField(allow_null=True),
        "incremental_revenue": serializers.CharField(allow_null=True),
        "revenue_per_person_difference": serializers.CharField(allow_null=True),
        "revenue_per_person_difference_ci": serializers.ListField(
            child=serializers.CharField(), allow_null=True
        ),
        "revenue_p_value": serializers.FloatField(allow_null=True),
        "revenue_interval": serializers.ChoiceField(choices=["welch", "bootstrap"]),
        "message_costs": serializers.CharField(required=False),
        "messages_sent": serializers.DictField(child=serializers.IntegerField(), required=False),
        "roi": serializers.FloatField(allow_null=True, required=False),
    },
)
_FIGURES = {
    "treatment": _ARM,
    "holdout": _ARM,
    "uplift": _UPLIFT,
    "enough_data": serializers.BooleanField(),
}
CHAIN_RESULTS = inline_serializer(
    "ChainResults",
    fields={
        "chain": serializers.IntegerField(),
        "from": serializers.DateField(allow_null=True),
        "to": serializers.DateField(allow_null=True),
        "goal": serializers.CharField(),
        "conversion_window_days": serializers.IntegerField(),
        "holdout_percent": serializers.IntegerField(),
        **_FIGURES,
        "srm_p_value": serializers.FloatField(allow_null=True),
        "srm_warning": serializers.BooleanField(),
        "chain_srm_p_value": serializers.FloatField(allow_null=True),
        "horizon": inline_serializer(
            "ChainResultsHorizon",
            fields={
                "source": serializers.CharField(help_text="plan, window"),
                "date": serializers.DateField(allow_null=True),
                "reached": serializers.BooleanField(),
                "planned_treatment_n": serializers.IntegerField(allow_null=True, required=False),
                "planned_control_n": serializers.IntegerField(allow_null=True, required=False),
                "planned_sample_reached": serializers.BooleanField(allow_null=True, required=False),
            },
        ),
        "verdict": inline_serializer(
            "ChainResultsVerdict",
            fields={
                "code": serializers.CharField(
                    help_text="running, no_data, sample_ratio_mismatch, not_enough_data, uplift, "
                    "harm, no_difference"
                ),
                "text": serializers.CharField(),
            },
        ),
        "steps": serializers.ListField(child=serializers.DictField()),
        "months": serializers.ListField(child=serializers.DictField()),
    },
)
MONTH_ROLLUP = inline_serializer(
    "TriggeredRevenueMonth",
    fields={
        "month": serializers.CharField(),
        "revenue": serializers.CharField(),
        "triggered_revenue": serializers.CharField(),
        "triggered_share": serializers.FloatField(allow_null=True),
        "triggered_share_percent": serializers.FloatField(allow_null=True),
        "benchmark_percent": serializers.FloatField(),
        "incremental_revenue": serializers.CharField(),
        "chains": serializers.ListField(child=serializers.DictField()),
    },
)


def _date_param(params: Any, name: str) -> dt.date | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(
            "invalid_date", _("Дата в формате ГГГГ-ММ-ДД, например 2026-03-01."), field=name
        ) from None


class ChainResultsView(ClientScopedViewSetMixin, GenericAPIView):
    model = TriggerChain
    permission_classes = [ClientAccessPermission]
    serializer_class = None

    @extend_schema(
        summary=_("Результаты цепочки: основная группа против контрольной"),
        parameters=[
            OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH),
            OpenApiParameter(
                "from", OpenApiTypes.DATE, description="Первый день входа (день клиента)."
            ),
            OpenApiParameter(
                "to", OpenApiTypes.DATE, description="Последний день входа (включительно)."
            ),
        ],
        responses={200: CHAIN_RESULTS, 400: ERROR_BODY, 404: ERROR_BODY},
        tags=TAGS,
    )
    def get(self, request: Request, pk: str) -> Response:
        chain = self.get_object()
        date_from = _date_param(request.query_params, "from")
        date_to = _date_param(request.query_params, "to")
        if date_from and date_to and date_from > date_to:
            raise ApiError("invalid_period", _("Начало периода позже его конца."), field="from")
        chain.client = self.client
        return Response(chain_results(chain=chain, date_from=date_from, date_to=date_to))


class TriggeredRevenueView(APIView):
    permission_classes = [ClientAccessPermission]

    @extend_schema(
        summary=_("Месяц клиента: инкрементальная выручка цепочек и доля выручки от триггеров"),
        parameters=[
            OpenApiParameter(
                "month", OpenApiTypes.STR, description="ГГГГ-ММ; по умолчанию текущий месяц."
            )
        ],
        responses={200: MONTH_ROLLUP, 400: ERROR_BODY},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        client = request_client(request)
        raw = request.query_params.get("month")
        if raw in (None, ""):
            month = timezone.localdate(timezone=client.tzinfo).replace(day=1)
        else:
            try:
                year, number = raw.split("-")
                if len(year) != 4 or len(number) != 2:
                    raise ValueError(raw)
                month = dt.date(int(year), int(number), 1)
            except ValueError:
                raise ApiError(
                    "invalid_month", _("Месяц в формате ГГГГ-ММ, например 2026-03."), field="month"
                ) from None
        return Response(client_month_rollup(client=client, month=month))


urlpatterns = [
    path("chains/<str:pk>/results/", ChainResultsView.as_view(), name="chain-results"),
    path(
        "reports/triggered-revenue/",
        TriggeredRevenueView.as_view(),
        name="reports-triggered-revenue",
    ),
]
