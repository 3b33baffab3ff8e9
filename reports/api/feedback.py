"""Value sent back to the ad systems: Yandex Direct bid modifiers from the CLV
recommendations, planned (the diff, a dry run), applied with per-item results, and rolled back.

    POST /api/v1/bid-modifiers/plan/                   the diff (writes nothing)
    POST /api/v1/bid-modifiers/apply/                  apply (or ``dry_run``: the diff only)
    GET  /api/v1/bid-modifier-changes/                 change sets with their items
    POST /api/v1/bid-modifier-changes/{id}/rollback/   previous values back, additions deleted

The rules (tier, account, points, per-item errors) live in ``reports.bidding``.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db.models import Prefetch
from django.urls import path
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from agency.api import ApiError, ClientScopedViewSetMixin, request_client
from agency.audit import audit_context
from clients.api import ClientAccessPermission

from ..bidding import bid_modifier_apply, bid_modifier_change_rollback, bid_modifier_plan
from ..models import BidModifierChange, BidModifierChangeItem

TAGS = ["reports"]

ERROR_BODY = inline_serializer(
    "BidModifierErrorBody",
    fields={
        "code": serializers.CharField(
            help_text="invalid, invalid_campaign_ids, direct_account_missing, "
            "ad_account_required, ad_account_not_found, tier_feature_value_bidding, "
            "direct_error, direct_units_exhausted, already_rolled_back"
        ),
        "message": serializers.CharField(),
        "field": serializers.CharField(required=False),
    },
)


class PlanInputSerializer(serializers.Serializer):
    campaign_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        min_length=1,
        max_length=100,
        help_text="id кампаний Яндекс Директа",
    )
    exclude_bottom = serializers.BooleanField(required=False, default=False)
    ad_account_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="нужен, если аккаунтов Директа несколько",
    )


class ApplyInputSerializer(PlanInputSerializer):
    dry_run = serializers.BooleanField(required=False, default=False)


class PlanItemSerializer(serializers.Serializer):
    campaign_id = serializers.IntegerField()
    audience_id = serializers.IntegerField()
    audience = serializers.CharField()
    remote_segment_id = serializers.IntegerField()
    retargeting_list_id = serializers.IntegerField(
        allow_null=True, help_text="null — список будет создан при применении"
    )
    modifier_id = serializers.IntegerField(allow_null=True)
    old_value = serializers.IntegerField(allow_null=True, help_text="null — корректировки нет")
    new_value = serializers.IntegerField()
    action = serializers.ChoiceField(choices=["add", "set", "unchanged"])
    reason = serializers.CharField()


PLAN_BODY = inline_serializer(
    "BidModifierPlan",
    fields={
        "ad_account_id": serializers.IntegerField(),
        "campaign_ids": serializers.ListField(child=serializers.IntegerField()),
        "exclude_bottom": serializers.BooleanField(),
        "counts": serializers.DictField(child=serializers.IntegerField()),
        "items": PlanItemSerializer(many=True),
        "lists_to_create": serializers.ListField(child=serializers.DictField()),
        "skipped": serializers.ListField(child=serializers.DictField()),
        "units_remaining": serializers.IntegerField(allow_null=True),
    },
)


class BidModifierChangeItemSerializer(serializers.ModelSerializer):
    action = serializers.CharField(read_only=True)

    class Meta:
        model = BidModifierChangeItem
        fields = [
            "id",
            "campaign_id",
            "audience",
            "audience_name",
            "retargeting_list_id",
            "modifier_id",
            "action",
            "previous_value",
            "new_value",
            "status",
            "error",
            "rollback_status",
            "rollback_error",
        ]
        read_only_fields = fields


class BidModifierChangeSerializer(serializers.ModelSerializer):
    items = BidModifierChangeItemSerializer(many=True, read_only=True)

    class Meta:
        model = BidModifierChange
        fields = [
            "id",
            "ad_account",
            "campaign_ids",
            "exclude_bottom",
            "status",
            "message",
            "units_remaining",
            "created_by",
            "created_at",
            "rolled_back_at",
            "items",
        ]
        read_only_fields = fields


APPLY_BODY = inline_serializer(
    "BidModifierApplyResult",
    fields={
        "dry_run": serializers.BooleanField(),
        "plan": PLAN_BODY,
        "change": BidModifierChangeSerializer(allow_null=True),
    },
)


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    data = serializer_class(data=request.data)
    if not data.is_valid():
        field = next(iter(data.errors))
        errors = data.errors[field]
        text = " ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
        raise ApiError("invalid", f"{field}: {text}", field=field, extra={"errors": data.errors})
    return data.validated_data


_audited = functools.partial(audit_context, source="api")


def _change_data(change: BidModifierChange | None) -> dict | None:
    if change is None:
        return None
    change = (
        BidModifierChange.objects.for_client(change.client_id)
        .prefetch_related(_items_prefetch(change.client_id))
        .get(pk=change.pk)
    )
    return BidModifierChangeSerializer(change).data


class BidModifierPlanView(APIView):
    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="bid_modifiers_plan",
        summary="Разница рекомендуемых корректировок ставок Директа с текущими (ничего не меняет)",
        request=PlanInputSerializer,
        examples=[OpenApiExample("Кампании", value={"campaign_ids": [123456]}, request_only=True)],
        responses={200: PLAN_BODY, 400: ERROR_BODY, 403: ERROR_BODY, 502: ERROR_BODY},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        data = _valid(PlanInputSerializer, request)
        plan = bid_modifier_plan(client=request_client(request), **data)
        return Response(plan.as_dict())


class BidModifierApplyView(APIView):
    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="bid_modifiers_apply",
        summary="Применить корректировки ставок в Директе (dry_run — только показать разницу)",
        request=ApplyInputSerializer,
        responses={200: APPLY_BODY, 400: ERROR_BODY, 403: ERROR_BODY, 502: ERROR_BODY},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        data = _valid(ApplyInputSerializer, request)
        plan, change = bid_modifier_apply(
            client=request_client(request), **data, **_audited(request)
        )
        return Response(
            {
                "dry_run": data["dry_run"],
                "plan": plan.as_dict(),
                "change": _change_data(change),
            }
        )


def _items_prefetch(client: Any) -> Prefetch:
    return Prefetch(
        "items", queryset=BidModifierChangeItem.objects.for_client(client).order_by("pk")
    )


class ChangeCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class BidModifierChangeViewSet(
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Change sets of bid modifiers with each item's result; ``rollback`` restores them."""

    model = BidModifierChange
    serializer_class = BidModifierChangeSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = ChangeCursorPagination
    lookup_value_converter = "str"

    def safely_get_queryset(self, queryset):
        return queryset.prefetch_related(_items_prefetch(self.client))

    @extend_schema(
        operation_id="bid_modifier_changes_rollback",
        summary="Откатить изменение: вернуть прежние значения, удалить добавленные",
        request=None,
        responses={
            200: BidModifierChangeSerializer,
            403: ERROR_BODY,
            404: ERROR_BODY,
            409: ERROR_BODY,
        },
        tags=TAGS,
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str | None = None) -> Response:
        change = bid_modifier_change_rollback(change=self.get_object(), **_audited(request))
        return Response(_change_data(change))


router = SimpleRouter(use_regex_path=False)
router.register("bid-modifier-changes", BidModifierChangeViewSet, basename="bid-modifier-change")

urlpatterns = [
    path("bid-modifiers/plan/", BidModifierPlanView.as_view(), name="bid-modifiers-plan"),
    path("bid-modifiers/apply/", BidModifierApplyView.as_view(), name="bid-modifiers-apply"),
    *router.urls,
]
