"""``GET /api/v1/attribution/``: the client's orders and revenue credited to channels or
campaigns under every attribution model side by side, with the CLV-weighted view
(``reports.touchpoints.attribution_report``); ``?format=csv`` downloads the table."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api import request_client
from agency.exports import csv_response
from audiences.api import CsvRenderer
from clients.api import ClientAccessPermission

from ..attribution import MODELS
from ..attribution_forms import MAX_DATE, MAX_DAYS, MIN_DATE, OUT_OF_RANGE
from ..touchpoints import attribution_report

TAGS = ["reports"]
BY = ("channel", "campaign")


def _query_fields() -> dict[str, serializers.Field]:
    return {
        "from": serializers.DateField(help_text="первый день периода (YYYY-MM-DD), включительно"),
        "to": serializers.DateField(help_text="последний день периода, включительно"),
        "by": serializers.ChoiceField(choices=BY, required=False, default="channel"),
        "half_life_days": serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=365,
            help_text="период полураспада для модели time decay, дней "
            "(по умолчанию из настроек отчётов клиента, 7)",
        ),
        "lookback_days": serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=365,
            default=30,
            help_text="окно касаний до заказа, дней (30 по умолчанию)",
        ),
    }


class AttributionQuerySerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return _query_fields()  # "from" is a Python keyword: declared here, not as attributes

    def validate(self, attrs: dict) -> dict:
        for name in ("from", "to"):
            if not MIN_DATE <= attrs[name] <= MAX_DATE:
                raise serializers.ValidationError({name: [OUT_OF_RANGE]})
        if attrs["from"] > attrs["to"]:
            raise serializers.ValidationError({"to": [_("Конец периода раньше его начала.")]})
        if (attrs["to"] - attrs["from"]).days >= MAX_DAYS:
            raise serializers.ValidationError(
                {"to": [_("Период длиннее трёх лет: сократите его.")]}
            )
        return attrs


class ModelCreditSerializer(serializers.Serializer):
    orders = serializers.FloatField(help_text="заказы, приписанные модели (дробные)")
    revenue = serializers.DecimalField(max_digits=16, decimal_places=2)


ModelsSerializer = type(
    "AttributionModelsSerializer",
    (serializers.Serializer,),
    {model: ModelCreditSerializer() for model in MODELS},
)


class AttributionRowSerializer(serializers.Serializer):
    key = serializers.CharField(
        help_text="канал (utm_source/utm_medium, email, sms, push, yandex/cpc, direct/none) "
        "или кампания (utm_campaign, chain:<id>, (not set), direct/none)"
    )
    label = serializers.CharField()
    models = ModelsSerializer()


class ClvRowSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    customers = serializers.IntegerField(help_text="покупатели, впервые купившие в периоде")
    customers_with_clv = serializers.IntegerField()
    first_order_revenue = serializers.DecimalField(max_digits=16, decimal_places=2)
    predicted_clv = serializers.DecimalField(max_digits=18, decimal_places=2)
    predicted_clv_per_customer = serializers.DecimalField(
        max_digits=18, decimal_places=2, allow_null=True
    )


class TotalsSerializer(serializers.Serializer):
    orders = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=16, decimal_places=2)
    orders_with_touches = serializers.IntegerField()
    touches_in_journeys = serializers.IntegerField()


class AttributionSerializer(serializers.Serializer):
    period = serializers.DictField(help_text='{"from", "to", "time_zone"}')
    settings = serializers.DictField(
        help_text='{"half_life_days", "lookback_days", "journey_stops_at_previous_order"}'
    )
    by = serializers.ChoiceField(choices=BY)
    models = serializers.ListField(child=serializers.CharField())
    totals = TotalsSerializer()
    rows = AttributionRowSerializer(many=True)
    clv = ClvRowSerializer(many=True)


CSV_HEADER = [
    "key",
    "label",
    *[f"{model}_{what}" for model in MODELS for what in ("orders", "revenue")],
]


def _csv_rows(rows: list[dict]) -> list[list[Any]]:
    return [
        [
            row["key"],
            row["label"],
            *[row["models"][model][what] for model in MODELS for what in ("orders", "revenue")],
        ]
        for row in rows
    ]


class AttributionView(APIView):
    """Every model side by side: last click, first click, linear, time decay, position-based
    (40/20/40), per channel or per campaign, and the channels' acquired customers with their
    predicted CLV."""

    permission_classes = [ClientAccessPermission]
    renderer_classes = [JSONRenderer, CsvRenderer]

    @extend_schema(
        operation_id="attribution",
        summary=_("Атрибуция заказов и выручки по каналам или кампаниям, все модели рядом"),
        description=_(
            "Путь заказа — касания покупателя (клики по utm-меткам, клики в письмах и SMS, "
            "открытия push, клики с yclid) до заказа, после его предыдущего заказа и не раньше "
            "lookback_days. Заказы без касаний — в direct/none, поэтому выручка каждой модели "
            "в сумме равна общей. ?format=csv — таблица в CSV."
        ),
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, required=True),
            OpenApiParameter("to", OpenApiTypes.DATE, required=True),
            OpenApiParameter("by", OpenApiTypes.STR, enum=list(BY)),
            OpenApiParameter("half_life_days", OpenApiTypes.INT),
            OpenApiParameter("lookback_days", OpenApiTypes.INT),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"]),
        ],
        responses={
            (200, "application/json"): AttributionSerializer,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="Столбцы: " + ", ".join(CSV_HEADER)
            ),
            (400, "application/json"): OpenApiResponse(
                description="invalid: неверный параметр (подробности в errors)"
            ),
        },
        tags=TAGS,
    )
    def get(self, request: Request) -> HttpResponse:
        client = request_client(request)
        query = AttributionQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        report = attribution_report(
            client=client,
            date_from=params["from"],
            date_to=params["to"],
            half_life_days=params.get("half_life_days"),
            lookback_days=params["lookback_days"],
        )
        by = params["by"]
        body = AttributionSerializer(
            {
                "period": report["period"],
                "settings": report["settings"],
                "by": by,
                "models": report["models"],
                "totals": report["totals"],
                "rows": report[f"by_{by}"],
                "clv": report["clv"][f"by_{by}"],
            }
        ).data
        if request.accepted_renderer.format == "csv":
            return csv_response(
                _csv_rows(report[f"by_{by}"]),
                f"attribution-{by}-{client.slug}-{params['from']:%Y%m%d}-{params['to']:%Y%m%d}.csv",
                header=CSV_HEADER,
            )
        return Response(body)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any):
        # Errors are JSON even when CSV was asked for.
        renderer = getattr(request, "accepted_renderer", None)
        if response.status_code >= 400 and renderer is not None and renderer.format == "csv":
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


urlpatterns = [path("attribution/", AttributionView.as_view(), name="attribution")]
