"""``POST /api/v1/experiments/design/``: the sample-size calculator of an incrementality test
(``reports.design.experiment_design``; the tier's ``incrementality`` feature). With
``save_plan`` and a ``chain`` the result also fixes the chain's test horizon."""

from __future__ import annotations

from django.urls import path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api import ApiError, request_client
from agency.audit import request_ip
from campaigns.models import TriggerChain
from clients.api import ClientAccessPermission

from ..design import chain_test_plan_set, experiment_design

TAGS = ["reports"]

_UNIT = {"min_value": 0.0, "max_value": 1.0}


class DesignInputSerializer(serializers.Serializer):
    baseline_rate = serializers.FloatField(help_text="Конверсия контрольной группы, доля (0..1).")
    mde_absolute = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Минимальный эффект, абсолютный (0.01 = +1 п.п.).",
    )
    mde_relative = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Минимальный эффект, относительный (0.2 = +20 %).",
    )
    alpha = serializers.FloatField(default=0.05, **_UNIT)
    power = serializers.FloatField(default=0.8, **_UNIT)
    treatment_share = serializers.FloatField(default=0.5, **_UNIT)
    eligible_per_day = serializers.FloatField(required=False, allow_null=True, min_value=0.0)
    chain = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Id цепочки: поток людей в день берётся из её входов за 28 дней.",
    )
    save_plan = serializers.BooleanField(
        default=False, help_text="Сохранить как план теста цепочки (горизонт вывода)."
    )

    def validate(self, attrs):
        has_abs = attrs.get("mde_absolute") is not None
        has_rel = attrs.get("mde_relative") is not None
        if has_abs == has_rel:
            raise serializers.ValidationError(
                {"mde_absolute": [_("Укажите ровно одно из полей mde_absolute и mde_relative.")]}
            )
        if attrs.get("save_plan") and attrs.get("chain") is None:
            raise serializers.ValidationError(
                {"chain": [_("Чтобы сохранить план, укажите цепочку.")]}
            )
        return attrs


DESIGN_OUTPUT = inline_serializer(
    "ExperimentDesign",
    fields={
        "baseline_rate": serializers.FloatField(),
        "treatment_rate": serializers.FloatField(),
        "mde_absolute": serializers.FloatField(),
        "alpha": serializers.FloatField(),
        "power": serializers.FloatField(),
        "treatment_share": serializers.FloatField(),
        "treatment_n": serializers.IntegerField(),
        "control_n": serializers.IntegerField(),
        "total_n": serializers.IntegerField(),
        "days": serializers.IntegerField(allow_null=True),
        "eligible_per_day": serializers.FloatField(allow_null=True),
        "eligible_per_day_source": serializers.CharField(allow_null=True),
        "chain": serializers.IntegerField(allow_null=True),
        "planned_end": serializers.DateField(required=False),
    },
)
ERROR_BODY = inline_serializer(
    "ExperimentDesignErrorBody",
    fields={
        "code": serializers.CharField(
            help_text="invalid (форма, см. errors), invalid_design (field — поле), "
            "chain_not_found, design_needs_flow, tier_feature_incrementality"
        ),
        "message": serializers.CharField(),
        "field": serializers.CharField(required=False),
        "errors": serializers.DictField(required=False),
    },
)


class ExperimentDesignView(APIView):
    permission_classes = [ClientAccessPermission]

    @extend_schema(
        summary=_("Расчёт размера теста инкрементальности"),
        request=DesignInputSerializer,
        responses={200: DESIGN_OUTPUT, 400: ERROR_BODY, 403: ERROR_BODY},
        examples=[
            OpenApiExample(
                "5 % → 6 %, 90/10",
                value={"baseline_rate": 0.05, "mde_absolute": 0.01, "treatment_share": 0.9},
                request_only=True,
            )
        ],
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        client = request_client(request)
        serializer = DesignInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        save_plan = data.pop("save_plan")
        chain = None
        if data.get("chain") is not None:
            chain = TriggerChain.objects.for_client(client).filter(pk=data["chain"]).first()
            if chain is None:
                raise ApiError(
                    "chain_not_found", _("Цепочка не найдена у этого клиента."), field="chain"
                )
            chain.client = client
        data["chain"] = chain
        design = experiment_design(client=client, **data)
        if save_plan:
            plan = chain_test_plan_set(
                chain=chain,
                design=design,
                actor=request.user if request.user.is_authenticated else request.auth,
                source="api",
                ip=request_ip(request),
            )
            design["planned_end"] = plan.planned_end.isoformat()
        return Response(design)


urlpatterns = [
    path("experiments/design/", ExperimentDesignView.as_view(), name="experiments-design"),
]
