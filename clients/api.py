"""The customer-base API: customers, orders and events (read, filter, bulk upsert)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from agency.api import ApiError, ClientScopedViewSetMixin, request_client
from agency.audit import audit_log, request_ip
from agency.parsers import query_moment
from agency.roles import ACCOUNT_MANAGER, AGENCY_ADMIN, staff_role

from .bulk import PARTIAL_PARAMETER, bulk_request, bulk_response, bulk_result_schema
from .ingest import IngestResult, ingest_records
from .models import ApiKey, ClientMembership, Customer, Event, Order
from .normalize import NormalizationError
from .selectors import customer_contact_q


class ClientAccessPermission(permissions.BasePermission):
    """Keys need the ``read``/``write`` scope; people need a role that allows writing."""

    message = _("Недостаточно прав для этого действия.")

    def has_permission(self, request: Request, view) -> bool:
        writing = request.method not in permissions.SAFE_METHODS
        if isinstance(request.auth, ApiKey):
            return request.auth.has_scope("write" if writing else "read")
        if not (request.user and request.user.is_authenticated):
            return False
        if not writing:
            return True
        client = request_client(request)
        if staff_role(request.user) in (AGENCY_ADMIN, ACCOUNT_MANAGER):
            return True
        return ClientMembership.objects.filter(
            client=client,
            user=request.user,
            role__in=[ClientMembership.Role.OWNER, ClientMembership.Role.ANALYST],
        ).exists()


# ---------------------------------------------------------------------------------------------
# Serializers (output, and the documented shape of bulk input)


class CustomerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = [
            "id",
            "external_id",
            "email",
            "phone",
            "first_name",
            "last_name",
            "city",
            "attributes",
            "first_seen",
            "source",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer):
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "external_id",
            "customer_external_id",
            "placed_at",
            "amount",
            "status",
            "channel",
            "items",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class EventSerializer(serializers.ModelSerializer):
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "external_id",
            "customer_external_id",
            "type",
            "occurred_at",
            "properties",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CustomerInputSerializer(serializers.Serializer):
    """Documentation of one bulk record; validation runs in clients.ingest, vectorised."""

    external_id = serializers.CharField(max_length=100)
    email = serializers.CharField(required=False, allow_blank=True)
    phone = serializers.CharField(
        required=False, allow_blank=True, help_text="Любой формат; → E.164"
    )
    first_name = serializers.CharField(required=False, allow_blank=True)
    last_name = serializers.CharField(required=False, allow_blank=True)
    city = serializers.CharField(required=False, allow_blank=True)
    attributes = serializers.DictField(required=False)
    first_seen = serializers.DateTimeField(required=False)
    source = serializers.CharField(required=False, allow_blank=True)


class OrderItemSerializer(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField(required=False)
    qty = serializers.IntegerField(min_value=1)
    price = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)


class OrderInputSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=100)
    customer_external_id = serializers.CharField(max_length=100)
    placed_at = serializers.DateTimeField(help_text="ISO 8601; без смещения — часовой пояс клиента")
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)
    status = serializers.ChoiceField(choices=Order.Status.choices, required=False)
    channel = serializers.CharField(required=False, allow_blank=True)
    items = OrderItemSerializer(many=True, required=False)


class EventInputSerializer(serializers.Serializer):
    external_id = serializers.CharField(
        max_length=100, required=False, help_text="Без id он выводится из содержания события"
    )
    customer_external_id = serializers.CharField(max_length=100)
    type = serializers.CharField(max_length=50)
    occurred_at = serializers.DateTimeField()
    properties = serializers.DictField(required=False)
    utm_source = serializers.CharField(required=False, allow_blank=True)
    utm_medium = serializers.CharField(required=False, allow_blank=True)
    utm_campaign = serializers.CharField(required=False, allow_blank=True)


BULK_RESULT = bulk_result_schema(
    "BulkResult",
    updated=serializers.IntegerField(help_text="Записей изменено"),
    unchanged=serializers.IntegerField(
        help_text="Принятых записей без изменений (те же значения уже хранятся)"
    ),
)


def bulk_result_body(result: IngestResult) -> dict:
    return {
        "committed": result.committed,
        "total": result.total,
        "created": result.created if result.committed else 0,
        "updated": result.updated if result.committed else 0,
        "unchanged": result.unchanged if result.committed else 0,
        "rejected": result.rejected,
        "errors": [e.as_dict() for e in result.errors],
    }


# ---------------------------------------------------------------------------------------------
# Viewsets

COMMON_FILTERS = [
    OpenApiParameter(
        "updated_since",
        OpenApiTypes.DATETIME,
        description="Изменённые с момента (ISO 8601; без смещения — часовой пояс клиента)",
    ),
    OpenApiParameter("external_id", OpenApiTypes.STR),
]


class BaseDataViewSet(
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """List (cursor pagination), retrieve, and ``POST bulk/`` for one kind of the client's data."""

    permission_classes = [ClientAccessPermission]
    kind: str

    def safely_get_queryset(self, queryset):
        params = self.request.query_params
        if since := query_moment(params, "updated_since", self.client.tzinfo):
            queryset = queryset.filter(updated_at__gte=since)
        if external_id := params.get("external_id"):
            queryset = queryset.filter(external_id=external_id)
        return self.filter_by_kind(queryset, params)

    def filter_by_kind(self, queryset, params):
        return queryset

    def bulk(self, request: Request) -> Response:
        records, partial = bulk_request(request)
        client = self.client
        result = ingest_records(client=client, kind=self.kind, records=records, partial=partial)
        audit_log(
            action=f"bulk_upsert_{self.kind}",
            source="api",
            actor=request.user,
            actor_label=str(request.user),
            client=client,
            details={
                "partial": partial,
                "committed": result.committed,
                "total": result.total,
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "rejected": result.rejected,
            },
            ip=request_ip(request),
        )
        return bulk_response(bulk_result_body(result))


def _bulk_schema(input_serializer):
    return extend_schema(
        request=input_serializer(many=True),
        parameters=[PARTIAL_PARAMETER],
        responses={
            200: OpenApiResponse(BULK_RESULT, description="Пакет записан (с partial — его часть)"),
            422: OpenApiResponse(BULK_RESULT, description="Пакет отклонён, ничего не записано"),
            400: OpenApiResponse(description="Тело не JSON-массив: invalid_body"),
            413: OpenApiResponse(description="Слишком много записей: too_many_records"),
        },
    )


@extend_schema(
    parameters=[
        *COMMON_FILTERS,
        OpenApiParameter("email", OpenApiTypes.STR),
        OpenApiParameter("phone", OpenApiTypes.STR, description="Любой формат"),
    ]
)
class CustomerViewSet(BaseDataViewSet):
    model = Customer
    kind = "customers"
    serializer_class = CustomerSerializer

    def filter_by_kind(self, queryset, params):
        try:
            for field in ("email", "phone"):
                if value := params.get(field):
                    queryset = queryset.filter(customer_contact_q(field=field, value=value))
        except NormalizationError as exc:
            # Kept on purpose: here the value is a query filter, so the code names the filter
            # as for updated_since; elsewhere the same refusal is a row's or a form's error.
            raise ApiError("invalid_filter", exc.message) from exc
        return queryset

    @_bulk_schema(CustomerInputSerializer)
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk_upsert(self, request: Request) -> Response:
        return self.bulk(request)


class _CustomerLinkedViewSet(BaseDataViewSet):
    def filter_by_kind(self, queryset, params):
        if customer_external_id := params.get("customer_external_id"):
            queryset = queryset.filter(customer__external_id=customer_external_id)
        return queryset.select_related("customer")


@extend_schema(
    parameters=[*COMMON_FILTERS, OpenApiParameter("customer_external_id", OpenApiTypes.STR)]
)
class OrderViewSet(_CustomerLinkedViewSet):
    model = Order
    kind = "orders"
    serializer_class = OrderSerializer

    @_bulk_schema(OrderInputSerializer)
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk_upsert(self, request: Request) -> Response:
        return self.bulk(request)


@extend_schema(
    parameters=[*COMMON_FILTERS, OpenApiParameter("customer_external_id", OpenApiTypes.STR)]
)
class EventViewSet(_CustomerLinkedViewSet):
    model = Event
    kind = "events"
    serializer_class = EventSerializer

    @_bulk_schema(EventInputSerializer)
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk_upsert(self, request: Request) -> Response:
        return self.bulk(request)
