"""Campaigns API: trigger chains (with nested steps, their funnel, activate/pause/archive),
message templates, the outbox (read-only), a customer's messages and push devices.

Views check shapes and call ``campaigns.authoring`` (rules, tier limits, audit) and
``campaigns.funnel``; refusals come back as JSON ``{"code", "message", "field"}``. Ids given in
bodies (templates, segments, audiences, customers) are looked up among the request's client's
objects only: another client's id is "not found", like a missing one. Ids in paths use the
``str`` converter: anything that is not one of the client's objects is the same JSON 404, also
for a method the route does not take (a POST-only action asked with GET).
"""

from __future__ import annotations

import functools
from typing import Any

from django.db.models import Model, Prefetch, QuerySet
from django.urls import re_path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
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
from agency.audit import audit_context
from agency.tenancy import get_scoped_object_or_404
from audiences.models import Audience
from clients.api import ClientAccessPermission
from clients.models import Customer
from segments.models import Segment

from .authoring import (
    CHAIN_FIELDS,
    chain_activate,
    chain_archive,
    chain_create,
    chain_pause,
    chain_update,
    push_device_register,
    push_device_remove,
    template_create,
    template_delete,
    template_update,
)
from .funnel import chain_funnel
from .models import (
    ChainStep,
    Channel,
    Message,
    MessageTemplate,
    Provider,
    PushDevice,
    TriggerChain,
)
from .templating import VARIABLES

TAGS = ["campaigns"]
ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)
MAX_DELAY_HOURS = 24 * 366
MAX_DAYS = 3650

ERROR_BODY = inline_serializer(
    "CampaignErrorBody",
    fields={
        "code": serializers.CharField(
            help_text="template_unknown_variable (variable — имя переменной), template_syntax, "
            "subject_required, title_required, sms_too_long, name_taken, trigger_incomplete, "
            "invalid_positions, channel_mismatch, condition_needs_previous, opens_not_tracked, "
            "template_not_found, segment_not_found, audience_not_found, steps_required, "
            "steps_have_messages, invalid_status, template_in_use, tier_feature_omnichannel, "
            "tier_feature_predictive, tier_limit_trigger_chains; invalid (форма, см. errors)"
        ),
        "message": serializers.CharField(),
        "field": serializers.CharField(required=False, allow_null=True),
        "variable": serializers.CharField(required=False),
        "errors": serializers.DictField(required=False),
    },
)


_audited = functools.partial(audit_context, source="api")


def _lookup(model: type[Model], client: Any, value: Any, code: str, field: str) -> Any:
    """One of the client's objects by id; another client's id is "not found" (400: the id is a
    value in the body, not the resource of the URL)."""
    found = None
    if isinstance(value, int) and not isinstance(value, bool):
        found = model.objects.for_client(client).filter(pk=value).first()
    if found is None:
        raise ApiError(
            code,
            _("%(what)s %(id)s не найден у этого клиента.")
            % {"what": model._meta.verbose_name, "id": value},
            field=field,
        )
    return found


class IdCursorPagination(CursorPagination):
    ordering = ("id",)
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500


class NewestCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class ScopedDetailMixin:
    """A foreign or missing id is 404 whatever the method: a method the route does not take
    (GET on a POST-only action) looks the object up first."""

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any):
        if self.kwargs.get(self.lookup_url_kwarg or self.lookup_field) is not None:
            self.get_object()
        return super().http_method_not_allowed(request, *args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Templates


class MessageTemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageTemplate
        fields = [
            "id",
            "name",
            "channel",
            "subject",
            "body",
            "offer_code",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MessageTemplateInputSerializer(serializers.Serializer):
    """Shape only; variables and channel rules are checked by campaigns.authoring."""

    name = serializers.CharField(max_length=200)
    channel = serializers.ChoiceField(choices=Channel.choices)
    subject = serializers.CharField(
        max_length=300,
        required=False,
        allow_blank=True,
        help_text="Тема письма или заголовок push (обязательны); для SMS не нужна",
    )
    body = serializers.CharField(
        max_length=100_000,
        trim_whitespace=False,
        help_text="Шаблон Django в песочнице; переменные: " + ", ".join(VARIABLES),
    )
    offer_code = serializers.CharField(max_length=100, required=False, allow_blank=True)


TEMPLATE_EXAMPLE = OpenApiExample(
    "Письмо",
    value={
        "name": "Скидка для вернувшихся",
        "channel": "email",
        "subject": "{{ first_name }}, скидка 15 %",
        "body": "<p>{{ first_name }}, промокод {{ offer_code }}.</p>"
        '<a href="{{ unsubscribe_url }}">Отписаться</a>',
        "offer_code": "BACK15",
    },
    request_only=True,
)


@extend_schema_view(
    list=extend_schema(summary=_("Шаблоны сообщений клиента"), tags=TAGS),
    retrieve=extend_schema(summary=_("Шаблон сообщения"), parameters=[ID_PARAMETER], tags=TAGS),
)
class MessageTemplateViewSet(
    ScopedDetailMixin,
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    model = MessageTemplate
    serializer_class = MessageTemplateSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = IdCursorPagination
    lookup_value_converter = "str"

    @extend_schema(
        summary=_("Создать шаблон (неизвестная переменная — 400 с её именем)"),
        request=MessageTemplateInputSerializer,
        examples=[TEMPLATE_EXAMPLE],
        responses={201: MessageTemplateSerializer, 400: ERROR_BODY},
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        data = MessageTemplateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        template = template_create(
            client=self.client, **dict(data.validated_data), **_audited(request)
        )
        return Response(self.get_serializer(template).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary=_("Изменить шаблон"),
        request=MessageTemplateInputSerializer(partial=True),
        parameters=[ID_PARAMETER],
        responses={200: MessageTemplateSerializer, 400: ERROR_BODY},
        tags=TAGS,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        template = self.get_object()
        data = MessageTemplateInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        template = template_update(
            template=template, **dict(data.validated_data), **_audited(request)
        )
        return Response(self.get_serializer(template).data)

    @extend_schema(
        summary=_("Удалить шаблон (используемый в цепочке — 409)"),
        parameters=[ID_PARAMETER],
        responses={204: None, 409: ERROR_BODY},
        tags=TAGS,
    )
    def destroy(self, request: Request, pk: str) -> Response:
        template_delete(template=self.get_object(), **_audited(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------------------------
# Chains


class ChainStepSerializer(serializers.ModelSerializer):
    template_name = serializers.CharField(source="template.name", read_only=True)

    class Meta:
        model = ChainStep
        fields = [
            "position",
            "delay_hours",
            "delay_from",
            "channel",
            "template",
            "template_name",
            "condition",
        ]
        read_only_fields = fields


class TriggerChainSerializer(serializers.ModelSerializer):
    steps = ChainStepSerializer(many=True, read_only=True)
    excluded_audiences = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = TriggerChain
        fields = [
            "id",
            *CHAIN_FIELDS,  # what the services write, one list (campaigns.authoring)
            "status",
            "preset",
            "excluded_audiences",
            "activated_at",
            "last_tick_at",
            "srm_p_value",
            "created_at",
            "updated_at",
            "steps",
        ]
        read_only_fields = fields


FUNNEL_BODY = inline_serializer(
    "ChainFunnel",
    fields={
        "enrolled": serializers.DictField(
            child=serializers.IntegerField(), help_text="treatment, holdout, total"
        ),
        "states": serializers.DictField(help_text="{arm: {state: n}}"),
        "converted": serializers.DictField(child=serializers.IntegerField()),
        "conversion_rate": serializers.DictField(child=serializers.FloatField(allow_null=True)),
        "conversion_value": serializers.DictField(
            child=serializers.CharField(), help_text="Сумма конверсий по группам, ₽"
        ),
        "srm_p_value": serializers.FloatField(allow_null=True),
        "srm_warning": serializers.BooleanField(
            help_text="p < 0,01: доли групп не совпадают с заданной контрольной группой"
        ),
        "steps": serializers.ListField(
            child=serializers.DictField(),
            help_text="По шагу: position, channel, template, queued, sending, sent, delivered, "
            "opened, clicked, suppressed, suppressed_by_reason, failed, cancelled, holdout",
        ),
        "totals": serializers.DictField(),
    },
)


class TriggerChainDetailSerializer(TriggerChainSerializer):
    funnel = serializers.SerializerMethodField()

    class Meta(TriggerChainSerializer.Meta):
        fields = [*TriggerChainSerializer.Meta.fields, "funnel"]
        read_only_fields = fields

    def get_funnel(self, obj: TriggerChain) -> dict:
        return chain_funnel(obj)


class ChainStepInputSerializer(serializers.Serializer):
    template = serializers.IntegerField(help_text="id шаблона этого клиента")
    position = serializers.IntegerField(
        required=False, min_value=1, max_value=100, help_text="По умолчанию — порядок в списке"
    )
    delay_hours = serializers.IntegerField(required=False, min_value=0, max_value=MAX_DELAY_HOURS)
    delay_from = serializers.ChoiceField(choices=ChainStep.DelayFrom.choices, required=False)
    channel = serializers.ChoiceField(
        choices=Channel.choices, required=False, help_text="По умолчанию — канал шаблона"
    )
    condition = serializers.ChoiceField(choices=ChainStep.Condition.choices, required=False)


class TriggerChainInputSerializer(serializers.Serializer):
    """Shape only; trigger fields, steps, segments and tier rules are checked by
    campaigns.authoring."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    kind = serializers.ChoiceField(choices=TriggerChain.Kind.choices, required=False)
    trigger = serializers.ChoiceField(choices=TriggerChain.Trigger.choices)
    trigger_event_type = serializers.CharField(required=False, allow_blank=True, max_length=50)
    trigger_days = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_DAYS
    )
    trigger_lifecycle_stage = serializers.CharField(required=False, allow_blank=True, max_length=20)
    trigger_churn_probability = serializers.FloatField(
        required=False, allow_null=True, min_value=0.0, max_value=1.0
    )
    trigger_segment = serializers.IntegerField(required=False, allow_null=True)
    audience_segment = serializers.IntegerField(required=False, allow_null=True)
    exit_on_segment_leave = serializers.BooleanField(required=False)
    reentry = serializers.ChoiceField(choices=TriggerChain.Reentry.choices, required=False)
    reentry_days = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_DAYS
    )
    holdout_percent = serializers.IntegerField(required=False, min_value=0, max_value=50)
    conversion_window_days = serializers.IntegerField(required=False, min_value=1, max_value=365)
    goal = serializers.ChoiceField(choices=TriggerChain.Goal.choices, required=False)
    goal_event_type = serializers.CharField(required=False, allow_blank=True, max_length=50)
    priority = serializers.IntegerField(required=False, min_value=0, max_value=32767)
    excluded_audiences = serializers.ListField(
        child=serializers.IntegerField(), required=False, max_length=100
    )
    steps = ChainStepInputSerializer(many=True, required=False, max_length=100)


CHAIN_EXAMPLE = OpenApiExample(
    "30 дней без покупки",
    value={
        "name": "Скучаем",
        "trigger": "days_since_purchase",
        "trigger_days": 30,
        "holdout_percent": 10,
        "steps": [
            {"template": 12, "delay_hours": 0},
            {"template": 13, "delay_hours": 48, "condition": "no_purchase"},
        ],
    },
    request_only=True,
)


@extend_schema_view(
    list=extend_schema(summary=_("Триггерные цепочки клиента с шагами"), tags=TAGS),
)
class TriggerChainViewSet(
    ScopedDetailMixin,
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    model = TriggerChain
    serializer_class = TriggerChainSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = IdCursorPagination
    lookup_value_converter = "str"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        steps = ChainStep.objects.select_related("template").order_by("position")
        audiences = Audience.objects.for_client(self.client).only("pk")
        return queryset.prefetch_related(
            Prefetch("steps", queryset=steps),
            Prefetch("excluded_audiences", queryset=audiences),
        )

    def _detail(self, chain: TriggerChain) -> dict:
        fresh = self.get_queryset().get(pk=chain.pk)
        return TriggerChainDetailSerializer(fresh, context=self.get_serializer_context()).data

    def _resolve(self, data: dict) -> tuple[dict, list[dict] | None]:
        fields = dict(data)
        steps = fields.pop("steps", None)
        for name in ("trigger_segment", "audience_segment"):
            if fields.get(name) is not None:
                fields[name] = _lookup(
                    Segment, self.client, fields[name], "segment_not_found", name
                )
        if "excluded_audiences" in fields:
            fields["excluded_audiences"] = [
                _lookup(Audience, self.client, pk, "audience_not_found", "excluded_audiences")
                for pk in dict.fromkeys(fields["excluded_audiences"])
            ]
        if steps is not None:
            steps = [
                {
                    **step,
                    "template": _lookup(
                        MessageTemplate,
                        self.client,
                        step["template"],
                        "template_not_found",
                        f"steps[{index}].template",
                    ),
                }
                for index, step in enumerate(steps)
            ]
        return fields, steps

    @extend_schema(
        summary=_("Цепочка: поля, шаги и воронка"),
        parameters=[ID_PARAMETER],
        responses={200: TriggerChainDetailSerializer},
        tags=TAGS,
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(self._detail(self.get_object()))

    @extend_schema(
        summary=_("Создать цепочку (черновик) с шагами"),
        request=TriggerChainInputSerializer,
        examples=[CHAIN_EXAMPLE],
        responses={201: TriggerChainDetailSerializer, 400: ERROR_BODY, 403: ERROR_BODY},
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        data = TriggerChainInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields, steps = self._resolve(data.validated_data)
        chain = chain_create(client=self.client, data=fields, steps=steps, **_audited(request))
        return Response(self._detail(chain), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary=_("Изменить цепочку; steps, если передан, заменяет шаги (по номерам)"),
        request=TriggerChainInputSerializer(partial=True),
        parameters=[ID_PARAMETER],
        responses={200: TriggerChainDetailSerializer, 400: ERROR_BODY, 403: ERROR_BODY},
        tags=TAGS,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        chain = self.get_object()
        data = TriggerChainInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields, steps = self._resolve(data.validated_data)
        chain = chain_update(chain=chain, data=fields, steps=steps, **_audited(request))
        return Response(self._detail(chain))

    def _status(self, request: Request, service: Any) -> Response:
        chain = service(chain=self.get_object(), **_audited(request))
        return Response(self._detail(chain))

    @extend_schema(
        summary=_("Запустить цепочку (лимит активных цепочек тарифа)"),
        request=None,
        parameters=[ID_PARAMETER],
        responses={200: TriggerChainDetailSerializer, 400: ERROR_BODY, 403: ERROR_BODY},
        tags=TAGS,
    )
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str) -> Response:
        return self._status(request, chain_activate)

    @extend_schema(
        summary=_("Поставить цепочку на паузу"),
        request=None,
        parameters=[ID_PARAMETER],
        responses={200: TriggerChainDetailSerializer, 400: ERROR_BODY},
        tags=TAGS,
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        return self._status(request, chain_pause)

    @extend_schema(
        summary=_("Отправить цепочку в архив"),
        request=None,
        parameters=[ID_PARAMETER],
        responses={200: TriggerChainDetailSerializer, 400: ERROR_BODY},
        tags=TAGS,
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        return self._status(request, chain_archive)


# ---------------------------------------------------------------------------------------------
# Messages (the outbox)


class MessageSerializer(serializers.ModelSerializer):
    customer_external_id = serializers.CharField(
        source="customer.external_id", read_only=True, allow_null=True
    )
    step = serializers.IntegerField(source="step.position", read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "chain",
            "step",
            "enrollment",
            "customer",
            "customer_external_id",
            "channel",
            "arm",
            "transactional",
            "address",
            "subject",
            "state",
            "reason",
            "provider",
            "provider_message_id",
            "attempts",
            "outcome_unknown",
            "due_at",
            "created_at",
            "sending_at",
            "sent_at",
            "delivered_at",
            "opened_at",
            "clicked_at",
            "finished_at",
        ]
        read_only_fields = fields


MESSAGE_FILTERS = [
    OpenApiParameter("chain", OpenApiTypes.INT, description="id цепочки"),
    OpenApiParameter("state", OpenApiTypes.STR, enum=list(Message.State.values)),
    OpenApiParameter("channel", OpenApiTypes.STR, enum=list(Channel.values)),
    OpenApiParameter("customer", OpenApiTypes.INT, description="id покупателя"),
    OpenApiParameter("customer_external_id", OpenApiTypes.STR),
]


def _int_filter(params: Any, name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit() or len(value) > 18:
        raise ApiError("invalid_filter", _("%(name)s — целое число.") % {"name": name}, field=name)
    return int(value)


def _choice_filter(params: Any, name: str, choices: list[str]) -> str | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if value not in choices:
        raise ApiError(
            "invalid_filter",
            _("%(name)s: одно из %(choices)s.") % {"name": name, "choices": ", ".join(choices)},
            field=name,
        )
    return value


def messages_filtered(client: Any, params: Any) -> QuerySet:
    queryset = Message.objects.for_client(client).select_related("customer", "step")
    if (chain := _int_filter(params, "chain")) is not None:
        queryset = queryset.filter(chain_id=chain)
    if (customer := _int_filter(params, "customer")) is not None:
        queryset = queryset.filter(customer_id=customer)
    if external_id := params.get("customer_external_id"):
        queryset = queryset.filter(customer__external_id=external_id[:100])
    if state := _choice_filter(params, "state", list(Message.State.values)):
        queryset = queryset.filter(state=state)
    if channel := _choice_filter(params, "channel", list(Channel.values)):
        queryset = queryset.filter(channel=channel)
    return queryset


@extend_schema_view(
    list=extend_schema(
        summary=_("Исходящие сообщения, новые первыми"), parameters=MESSAGE_FILTERS, tags=TAGS
    ),
    retrieve=extend_schema(summary=_("Сообщение"), parameters=[ID_PARAMETER], tags=TAGS),
)
class MessageViewSet(
    ScopedDetailMixin,
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    model = Message
    serializer_class = MessageSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = NewestCursorPagination
    lookup_value_converter = "str"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        if self.action == "list":
            return messages_filtered(self.client, self.request.query_params)
        return queryset.select_related("customer", "step")


class CustomerMessagesView(APIView):
    """``GET /api/v1/customers/{id}/messages/``: what the platform sent (or held back) to one
    customer, newest first."""

    permission_classes = [ClientAccessPermission]
    pagination_class = NewestCursorPagination

    @extend_schema(
        operation_id="customer_messages",
        summary=_("Сообщения покупателя, новые первыми"),
        parameters=[
            ID_PARAMETER,
            OpenApiParameter("chain", OpenApiTypes.INT),
            OpenApiParameter("state", OpenApiTypes.STR, enum=list(Message.State.values)),
            OpenApiParameter("channel", OpenApiTypes.STR, enum=list(Channel.values)),
        ],
        responses={200: MessageSerializer(many=True)},
        tags=TAGS,
    )
    def get(self, request: Request, pk: str) -> Response:
        client = request_client(request)
        customer = get_scoped_object_or_404(Customer, client, pk=pk)
        params = request.query_params.copy()
        params["customer"] = str(customer.pk)
        params.pop("customer_external_id", None)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(messages_filtered(client, params), request, view=self)
        return paginator.get_paginated_response(MessageSerializer(page, many=True).data)


# ---------------------------------------------------------------------------------------------
# Push devices


class PushDeviceSerializer(serializers.ModelSerializer):
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)

    class Meta:
        model = PushDevice
        fields = ["id", "customer", "customer_external_id", "provider", "created_at", "gone_at"]
        read_only_fields = fields


class PushDeviceInputSerializer(serializers.Serializer):
    customer = serializers.IntegerField(required=False, help_text="id покупателя")
    customer_external_id = serializers.CharField(
        required=False, max_length=100, help_text="или его external_id"
    )
    provider = serializers.ChoiceField(
        choices=[(Provider.RUSTORE, "RuStore"), (Provider.WEBPUSH, "Web push")]
    )
    token = serializers.JSONField(
        write_only=True,
        help_text='RuStore: строка-токен; web push: подписка {"endpoint", "keys": '
        '{"p256dh", "auth"}} (объект или JSON-строка). Не возвращается.',
    )


@extend_schema_view(
    list=extend_schema(summary=_("Push-устройства покупателей"), tags=TAGS),
    retrieve=extend_schema(summary=_("Push-устройство"), parameters=[ID_PARAMETER], tags=TAGS),
)
class PushDeviceViewSet(
    ScopedDetailMixin,
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    model = PushDevice
    serializer_class = PushDeviceSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = IdCursorPagination
    lookup_value_converter = "str"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("customer")

    @extend_schema(
        summary=_("Добавить push-адрес покупателя (тот же токен — обновляется)"),
        request=PushDeviceInputSerializer,
        examples=[
            OpenApiExample(
                "RuStore",
                value={"customer_external_id": "c-1", "provider": "rustore", "token": "<token>"},
                request_only=True,
            )
        ],
        responses={201: PushDeviceSerializer, 200: PushDeviceSerializer, 400: ERROR_BODY},
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        data = PushDeviceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        customers = Customer.objects.for_client(self.client)
        customer = None
        if fields.get("customer") is not None:
            customer = customers.filter(pk=fields["customer"]).first()
        elif fields.get("customer_external_id"):
            customer = customers.filter(external_id=fields["customer_external_id"]).first()
        else:
            raise ApiError(
                "customer_required",
                _("Укажите customer или customer_external_id."),
                field="customer",
            )
        if customer is None:
            raise ApiError("customer_not_found", _("Покупатель не найден."), field="customer")
        device, created = push_device_register(
            client=self.client,
            customer=customer,
            provider=fields["provider"],
            token=fields["token"],
            **_audited(request),
        )
        return Response(
            self.get_serializer(device).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        summary=_("Удалить push-адрес"),
        parameters=[ID_PARAMETER],
        responses={204: None},
        tags=TAGS,
    )
    def destroy(self, request: Request, pk: str) -> Response:
        push_device_remove(device=self.get_object(), **_audited(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


router = SimpleRouter(use_regex_path=False)
router.register("chains", TriggerChainViewSet, basename="chain")
router.register("templates", MessageTemplateViewSet, basename="message-template")
router.register("messages", MessageViewSet, basename="message")
router.register("push-devices", PushDeviceViewSet, basename="push-device")

# The customer's messages: a route of campaigns (clients, below, knows nothing of messages).
# A regex route as consent's customer consents: the tenant-isolation walk fills its (?P<pk>…).
urlpatterns = [
    re_path(
        r"^customers/(?P<pk>[0-9]+)/messages/$",
        CustomerMessagesView.as_view(),
        name="customer-messages",
    ),
    *router.urls,
]
