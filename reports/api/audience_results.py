"""``GET /api/v1/audiences/{id}/results/?from=&to=``: an ad audience's uploaded people against
its holdout, shaped as a chain's results (``reports.audience_results``)."""

from __future__ import annotations

from django.urls import path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api import request_client
from agency.tenancy import get_scoped_object_or_404
from audiences.models import Audience
from clients.api import ClientAccessPermission

from ..audience_results import audience_results

TAGS = ["reports"]


class AudienceResultsInputSerializer(serializers.Serializer):
    # "from" is a Python keyword: the field is declared under its query-parameter name below.
    to = serializers.DateField(help_text="Конец периода (включительно), ГГГГ-ММ-ДД")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField(help_text="Начало периода, ГГГГ-ММ-ДД")
        return fields


class ArmSerializer(serializers.Serializer):
    n = serializers.IntegerField()
    conversions = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=16, decimal_places=2)
    conversion_rate = serializers.FloatField(allow_null=True)
    revenue_per_person = serializers.FloatField(allow_null=True)


class UpliftSerializer(serializers.Serializer):
    absolute = serializers.FloatField(allow_null=True)
    absolute_ci = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    relative = serializers.FloatField(allow_null=True)
    relative_ci = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    incremental_conversions = serializers.FloatField(allow_null=True)
    incremental_revenue = serializers.FloatField(allow_null=True)
    revenue_per_person = serializers.FloatField(allow_null=True)
    revenue_per_person_ci = serializers.ListField(child=serializers.FloatField(), allow_null=True)


class AudienceResultsSerializer(serializers.Serializer):
    audience = serializers.IntegerField()
    holdout_percent = serializers.IntegerField()
    holdout_unit = serializers.CharField()
    holdout_started_at = serializers.DateTimeField()
    treatment = ArmSerializer()
    holdout = ArmSerializer()
    uplift = UpliftSerializer()
    srm_p_value = serializers.FloatField(
        allow_null=True, help_text="Проверка долей (хи-квадрат); null — мало людей или гео-тест"
    )
    enough_data = serializers.BooleanField(
        help_text="В каждой группе не меньше 5 конверсий и 5 людей без конверсии"
    )
    clustered = serializers.BooleanField(
        help_text="Гео-тест: регионы разбиты целиком, интервалы по людям слишком узки"
    )

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["from"] = instance["from"].isoformat()
        data["to"] = instance["to"].isoformat()
        return data


class AudienceResultsView(APIView):
    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="audience_results",
        summary=_("Прирост от аудитории: выгруженные против контрольной группы"),
        parameters=[
            OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH),
            OpenApiParameter("from", OpenApiTypes.DATE, required=True),
            OpenApiParameter("to", OpenApiTypes.DATE, required=True),
        ],
        responses={200: AudienceResultsSerializer},
        tags=TAGS,
    )
    def get(self, request: Request, pk: int) -> Response:
        client = request_client(request)
        audience = get_scoped_object_or_404(Audience, client, pk=pk)
        query = AudienceResultsInputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        results = audience_results(
            audience=audience,
            date_from=query.validated_data["from"],
            date_to=query.validated_data["to"],
        )
        return Response(AudienceResultsSerializer(results).data)


urlpatterns = [
    path("audiences/<int:pk>/results/", AudienceResultsView.as_view(), name="audience_results"),
]
