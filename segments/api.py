"""Segment and scoring API: segments (list, create, update, retrieve, members), a customer's
scores, starting a scoring run and watching it.

Views check shapes and call ``segments.segmentation`` / ``segments.services``; rules (tier
limits, definitions) live there and come back as JSON errors with a stable ``code``.

Ids in paths use the ``str`` converter on purpose: any id that is not one of the client's objects
(someone else's, missing, or not a number) reaches the scoped look-up and gets the same JSON 404.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from agency.api import ApiError, ClientScopedViewSetMixin, request_client
from agency.audit import request_ip
from agency.tenancy import get_scoped_object_or_404
from clients.api import ClientAccessPermission, CustomerSerializer
from clients.models import Customer

from .models import CustomerScore, ScoringRun, ScoringSettings, Segment, SegmentMembership
from .scoring import SCORE_COLUMNS
from .segmentation import (
    segment_create,
    segment_definition_describe,
    segment_members_current,
    segment_update,
)
from .services import (
    SCORING_SETTING_BOUNDS,
    ScoringRunActive,
    scoring_run_request,
    scoring_settings_for,
    scoring_settings_save,
)

ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)
TAGS = ["segments"]


ERROR_BODY = inline_serializer(
    "SegmentErrorBody",
    fields={
        "code": serializers.CharField(
            help_text="invalid_definition, invalid_name, invalid_kind, segment_name_taken, "
            "tier_limit_segments, tier_feature_predictive"
        ),
        "message": serializers.CharField(),
        # Two shapes, as the code says: the definition's nodes, or the fields of the body.
        "errors": serializers.JSONField(
            required=False,
            help_text="invalid_definition: [{path: узел определения, напр. all[2].orders, "
            "message}]; invalid (поля тела): {поле: [сообщения]}",
        ),
        "tier": serializers.CharField(required=False),
        "required_tier": serializers.CharField(required=False, allow_null=True),
        "limit": serializers.IntegerField(required=False),
    },
)


# ---------------------------------------------------------------------------------------------
# Segments


class SegmentSerializer(serializers.ModelSerializer):
    description = serializers.SerializerMethodField(help_text="Определение по-русски")
    members_url = serializers.SerializerMethodField()

    class Meta:
        model = Segment
        fields = [
            "id",
            "name",
            "kind",
            "definition",
            "description",
            "is_active",
            "size",
            "warnings",
            "refreshed_at",
            "members_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_description(self, obj: Segment) -> str:
        return segment_definition_describe(obj.kind, obj.definition)

    def get_members_url(self, obj: Segment) -> str:
        return reverse("segment-members", kwargs={"pk": obj.pk})


DEFINITION_HELP = (
    'rfm: {"names": ["Champions", ...]}; lifecycle: {"stages": ["Onboarding", ...]}; '
    'predictive: {"churn_at_least": 0.7} | {"clv_top_percent": 10} | {"clv_decile": 10}; '
    'rule: дерево правил {"all"|"any"|"none": [...]} с условиями attribute, score, orders, '
    'events; lookalike_seed: {"top_percent": 20, "by": "predicted_clv"|"monetary"}; '
    'suppression: {"type": "recent_purchasers", "days": 30} | {"type": "existing_customers"} '
    '| {"type": "opted_out", "purpose": "ad_audiences"}.'
)


class SegmentInputSerializer(serializers.Serializer):
    """Shape only; the definition and the tier are checked by segments.segmentation."""

    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=Segment.Kind.choices)
    definition = serializers.JSONField(help_text=DEFINITION_HELP)
    is_active = serializers.BooleanField(required=False, default=True)


class SegmentMemberSerializer(serializers.ModelSerializer):
    customer = CustomerSerializer(read_only=True)

    class Meta:
        model = SegmentMembership
        fields = ["customer", "entered_at"]
        read_only_fields = fields


class MembersCursorPagination(CursorPagination):
    """Members in customer id order: the segment's open-membership index serves each page."""

    ordering = ("customer_id",)
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


SEGMENT_EXAMPLES = [
    OpenApiExample(
        "RFM",
        value={"name": "Лучшие", "kind": "rfm", "definition": {"names": ["Champions", "Loyal"]}},
        request_only=True,
    ),
    OpenApiExample(
        "Правило",
        value={
            "name": "Москва, 2+ заказа за 90 дней",
            "kind": "rule",
            "definition": {
                "all": [
                    {"attribute": "city", "op": "eq", "value": "Москва"},
                    {"orders": {"count": {"gte": 2}, "within_days": 90}},
                ]
            },
        },
        request_only=True,
    ),
]


@extend_schema_view(
    list=extend_schema(summary=_("Сегменты клиента с размерами"), tags=TAGS),
    retrieve=extend_schema(summary=_("Сегмент"), parameters=[ID_PARAMETER], tags=TAGS),
)
class SegmentViewSet(
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Segments of the key's client. Create and update go through segment_create /
    segment_update (tier limits, definition checks); members are computed at once."""

    model = Segment
    serializer_class = SegmentSerializer
    permission_classes = [ClientAccessPermission]
    lookup_value_converter = "str"

    def _save(self, request: Request, segment: Segment | None, partial: bool) -> Segment:
        data = SegmentInputSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if segment is None:
            return segment_create(client=self.client, actor=request.user, source="api", **fields)
        return segment_update(segment=segment, actor=request.user, source="api", **fields)

    @extend_schema(
        summary=_("Создать сегмент"),
        request=SegmentInputSerializer,
        examples=SEGMENT_EXAMPLES,
        responses={201: SegmentSerializer, 400: ERROR_BODY, 403: ERROR_BODY},
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        segment = self._save(request, None, partial=False)
        return Response(self.get_serializer(segment).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary=_("Изменить сегмент целиком"),
        request=SegmentInputSerializer,
        parameters=[ID_PARAMETER],
        responses={200: SegmentSerializer, 400: ERROR_BODY, 403: ERROR_BODY},
        tags=TAGS,
    )
    def update(self, request: Request, pk: str) -> Response:
        segment = self._save(request, self.get_object(), partial=False)
        return Response(self.get_serializer(segment).data)

    @extend_schema(
        summary=_("Изменить поля сегмента"),
        request=SegmentInputSerializer(partial=True),
        parameters=[ID_PARAMETER],
        responses={200: SegmentSerializer, 400: ERROR_BODY, 403: ERROR_BODY},
        tags=TAGS,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        segment = self._save(request, self.get_object(), partial=True)
        return Response(self.get_serializer(segment).data)

    @extend_schema(
        summary=_("Участники сегмента (курсорная пагинация)"),
        parameters=[ID_PARAMETER],
        responses={200: SegmentMemberSerializer(many=True)},
        tags=TAGS,
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="members",
        url_name="members",
        serializer_class=SegmentMemberSerializer,
        pagination_class=MembersCursorPagination,
    )
    def members(self, request: Request, pk: str) -> Response:
        segment = self.get_object()
        memberships: QuerySet = segment_members_current(segment).select_related("customer")
        page = self.paginate_queryset(memberships)
        return self.get_paginated_response(SegmentMemberSerializer(page, many=True).data)


# ---------------------------------------------------------------------------------------------
# A customer's scores


class CustomerSegmentSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="segment_id")
    name = serializers.CharField(source="segment.name")
    entered_at = serializers.DateTimeField()


class CustomerScoreSerializer(serializers.ModelSerializer):
    customer_id = serializers.IntegerField()
    external_id = serializers.CharField(source="customer.external_id")
    run_id = serializers.IntegerField(allow_null=True)
    segments = serializers.SerializerMethodField()

    class Meta:
        model = CustomerScore
        fields = [
            "customer_id",
            "external_id",
            *SCORE_COLUMNS,
            "computed_at",
            "run_id",
            "segments",
        ]
        read_only_fields = fields

    @extend_schema_field(CustomerSegmentSerializer(many=True))
    def get_segments(self, obj: CustomerScore) -> list[dict]:
        memberships = (
            SegmentMembership.objects.for_client(obj.client_id)
            .filter(customer_id=obj.customer_id, left_at__isnull=True, segment__is_active=True)
            .select_related("segment")
            .order_by("segment__name")
        )
        return CustomerSegmentSerializer(memberships, many=True).data


class CustomerScoresView(APIView):
    """``GET /api/v1/customers/{id}/scores/``: the latest scores and current segments."""

    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="customer_scores",
        summary=_("Оценки покупателя (последний скоринг) и его текущие сегменты"),
        parameters=[ID_PARAMETER],
        responses={
            200: CustomerScoreSerializer,
            404: OpenApiResponse(
                description="Нет такого покупателя (not_found) или он ещё не оценён (not_scored)"
            ),
        },
        tags=TAGS,
    )
    def get(self, request: Request, pk: str) -> Response:
        client = request_client(request)
        customer = get_scoped_object_or_404(Customer, client, pk=pk)
        found = (
            CustomerScore.objects.for_client(client)
            .filter(customer_id=customer.pk)
            .select_related("customer")
            .first()
        )
        if found is None:
            raise ApiError(
                "not_scored",
                _("Покупатель ещё не оценён: оценки появятся после запуска скоринга."),
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return Response(CustomerScoreSerializer(found).data)


# ---------------------------------------------------------------------------------------------
# Scoring runs


class ScoringRunSerializer(serializers.ModelSerializer):
    status_url = serializers.SerializerMethodField()

    class Meta:
        model = ScoringRun
        fields = [
            "id",
            "status",
            "progress",
            "stage",
            "as_of",
            "source",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "customers",
            "orders",
            "error",
            "status_url",
        ]
        read_only_fields = fields

    def get_status_url(self, obj: ScoringRun) -> str:
        return reverse("scoring-run-detail", kwargs={"pk": obj.pk})


class ScoringRunStartView(APIView):
    """``POST /api/v1/scoring/run/``: a pending run, executed by a Celery worker."""

    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="scoring_run_start",
        summary=_("Запустить скоринг клиента в фоне"),
        request=None,
        responses={
            202: ScoringRunSerializer,
            409: OpenApiResponse(
                inline_serializer(
                    "ScoringRunActiveError",
                    fields={
                        "code": serializers.CharField(help_text="scoring_run_active"),
                        "message": serializers.CharField(),
                        "id": serializers.IntegerField(help_text="Идущий запуск"),
                        "status_url": serializers.CharField(),
                    },
                ),
                description="Запуск уже идёт (code scoring_run_active, его id и status_url)",
            ),
        },
        tags=["scoring"],
    )
    def post(self, request: Request) -> Response:
        client = request_client(request)
        try:
            run = scoring_run_request(
                client=client, actor=request.user, source="api", ip=request_ip(request)
            )
        except ScoringRunActive as exc:
            exc.extra["status_url"] = reverse("scoring-run-detail", kwargs={"pk": exc.run.pk})
            raise
        return Response(ScoringRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ScoringSettingsSerializer(serializers.ModelSerializer):
    # The shape only (the column's digits); what the values may be is the service's rule.
    monthly_discount_rate = serializers.DecimalField(max_digits=5, decimal_places=4)
    gross_margin = serializers.DecimalField(max_digits=5, decimal_places=4)
    clv_months = serializers.IntegerField(min_value=0, max_value=32767)
    recommendations_count = serializers.IntegerField(min_value=0, max_value=32767)

    class Meta:
        model = ScoringSettings
        fields = list(SCORING_SETTING_BOUNDS)


class ScoringSettingsView(APIView):
    """``GET``/``PATCH /api/v1/scoring/settings/``: the client's scoring thresholds and money
    assumptions; a change goes through ``scoring_settings_save``, which refuses settings that
    make no sense (400 ``invalid_scoring_settings`` with the ``field``)."""

    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="scoring_settings",
        summary="Настройки скоринга клиента",
        responses={200: ScoringSettingsSerializer},
        tags=["scoring"],
    )
    def get(self, request: Request) -> Response:
        settings = scoring_settings_for(request_client(request))
        return Response(ScoringSettingsSerializer(settings).data)

    @extend_schema(
        operation_id="scoring_settings_update",
        summary="Изменить настройки скоринга (только переданные поля)",
        request=ScoringSettingsSerializer,
        responses={
            200: ScoringSettingsSerializer,
            400: OpenApiResponse(
                description="invalid_scoring_settings (field — настройка) или invalid"
            ),
        },
        tags=["scoring"],
    )
    def patch(self, request: Request) -> Response:
        client = request_client(request)
        given = ScoringSettingsSerializer(data=request.data, partial=True)
        given.is_valid(raise_exception=True)
        settings = scoring_settings_save(
            client=client,
            values=dict(given.validated_data),
            actor=request.user,
            source="api",
            ip=request_ip(request),
        )
        return Response(ScoringSettingsSerializer(settings).data)


class ScoringRunPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50


@extend_schema_view(
    list=extend_schema(summary=_("Запуски скоринга, новые первыми"), tags=["scoring"]),
    retrieve=extend_schema(
        summary=_("Запуск скоринга: статус и ход"), parameters=[ID_PARAMETER], tags=["scoring"]
    ),
)
class ScoringRunViewSet(
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    model = ScoringRun
    serializer_class = ScoringRunSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = ScoringRunPagination
    lookup_value_converter = "str"


router = SimpleRouter(use_regex_path=False)
router.register("segments", SegmentViewSet, basename="segment")
router.register("scoring/runs", ScoringRunViewSet, basename="scoring-run")

urlpatterns = [
    path("scoring/run/", ScoringRunStartView.as_view(), name="scoring-run-start"),
    path("scoring/settings/", ScoringSettingsView.as_view(), name="scoring-settings"),
    path("customers/<str:pk>/scores/", CustomerScoresView.as_view(), name="customer-scores"),
    *router.urls,
]
