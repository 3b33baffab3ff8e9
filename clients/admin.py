"""Staff admin of clients, their tiers, API keys, customer base and CSV imports.

Scoping and role permissions come from ``agency.admin_base``; writes that have a service go
through it (client and API-key creation, key revocation, import runs).
"""

from __future__ import annotations

import copy
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Count, Q, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy, ngettext

from agency.admin_base import (
    AGENCY_ADMIN,
    ClientListFilter,
    LargeTableAdminMixin,
    StaffRoleAdmin,
    TenantAdminForm,
    TenantScopedAdmin,
    TenantScopedInline,
    request_staff_client_ids,
    request_staff_role,
)
from agency.admin_jobs import JobAdminMixin
from agency.audit import request_ip
from agency.exports import csv_file_response
from agency.roles import STAFF_GROUPS
from integrations.bitrix24.client import Bitrix24UrlInvalid, rest_webhook_parse

from .models import (
    ApiKey,
    Client,
    ClientMembership,
    CrmDeal,
    Customer,
    Event,
    ImportJob,
    Order,
    Tier,
)
from .normalize import NormalizationError, normalize_email, normalize_phone
from .selectors import customer_identity_q, customer_ids_search
from .services import (
    api_key_create,
    api_key_revoke,
    client_bitrix24_portal,
    client_bitrix24_rest_set,
    client_create,
    import_job_submit,
)


def _adopt(target: Any, source: Any) -> None:
    """Make the admin's unsaved form instance the object a service created, so that the rest of
    the add view (m2m, log entries, redirect) works on the saved row."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


# --------------------------------------------------------------------------------------------
# Tiers


@admin.register(Tier)
class TierAdmin(StaffRoleAdmin):
    """Tier limits are data: agency admins edit them, everyone else reads them."""

    add_roles = ()
    change_roles = (AGENCY_ADMIN,)
    delete_roles = ()

    list_display = (
        "name",
        "code",
        "ad_spend_min",
        "ad_spend_max",
        "monthly_fee_min",
        "monthly_fee_max",
        "max_segments",
        "max_trigger_chains",
        "predictive",
        "omnichannel",
        "programmatic",
    )
    readonly_fields = ("code",)
    ordering = ("position",)


# --------------------------------------------------------------------------------------------
# Clients


class ClientMembershipInline(TenantScopedInline):
    """Portal access is not evidence: account managers may grant and remove it."""

    model = ClientMembership
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    delete_roles = (AGENCY_ADMIN, "account_manager")
    verbose_name = gettext_lazy("доступ к порталу")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "user":
            kwargs["queryset"] = db_field.related_model.objects.filter(is_active=True).order_by(
                "username"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ClientAdminForm(TenantAdminForm):
    # Write-only: the stored URL (a credential) is never shown, only its portal.
    bitrix24_rest_url = forms.CharField(
        label=gettext_lazy("входящий вебхук Битрикс24 (REST)"),
        required=False,
        max_length=300,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 70}),
        help_text=gettext_lazy(
            "https://<портал>.bitrix24.ru/rest/<id пользователя>/<код вебхука>/ — входящий "
            "вебхук с правом crm: по нему платформа читает контакт и сделку, о которых сообщил "
            "исходящий вебхук (он присылает только ID). Только облачные порталы Битрикс24. Пусто — "
            "оставить как есть."
        ),
    )
    bitrix24_rest_clear = forms.BooleanField(
        label=gettext_lazy("забыть входящий вебхук Битрикс24"), required=False
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if "slug" in self.fields and self.instance.pk is None:
            self.fields["slug"].required = False
            self.fields["slug"].help_text = gettext("Пусто — сгенерировать из названия.")

    def clean_bitrix24_rest_url(self) -> str:
        url = (self.cleaned_data.get("bitrix24_rest_url") or "").strip()
        if url:
            try:
                rest_webhook_parse(url)
            except Bitrix24UrlInvalid as exc:
                raise forms.ValidationError(str(exc)) from exc
        return url


@admin.register(Client)
class ClientAdmin(TenantScopedAdmin):
    client_field = "pk"
    add_roles = (AGENCY_ADMIN,)
    form = ClientAdminForm
    audited_by_services = ("add",)  # client_created

    list_display = (
        "name",
        "tier",
        "monthly_ad_spend",
        "is_active",
        "members_count",
        "account_managers_list",
    )
    list_filter = ("tier", "is_active")
    list_select_related = ("tier",)
    search_fields = ("name", "slug", "=inn")
    filter_horizontal = ("account_managers",)
    inlines = [ClientMembershipInline]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "slug",
                    "legal_name",
                    "inn",
                    "tier",
                    "monthly_ad_spend",
                    "time_zone",
                    "is_active",
                )
            },
        ),
        (gettext_lazy("152-ФЗ"), {"fields": ("pd_operator_registry_number",)}),
        (gettext_lazy("Команда агентства"), {"fields": ("account_managers",)}),
        (
            gettext_lazy("Интеграции"),
            {
                "fields": (
                    "webhook_secret",
                    "amocrm_webhook_url",
                    "bitrix24_portal",
                    "bitrix24_rest_url",
                    "bitrix24_rest_clear",
                )
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(members_count=Count("memberships", distinct=True))
            .prefetch_related("account_managers")
        )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        fieldsets = copy.deepcopy(self.fieldsets)
        if obj is None:  # the secret is generated by client_create
            fieldsets = tuple(fs for fs in fieldsets if fs[0] != gettext("Интеграции"))
        elif request_staff_role(request) != AGENCY_ADMIN:  # integrations are read-only
            for name, options in fieldsets:
                if name == gettext("Интеграции"):
                    options["fields"] = ("webhook_secret", "bitrix24_portal")
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        fields = (
            ["created_at"]
            if obj is None
            else ["slug", "created_at", "amocrm_webhook_url", "bitrix24_portal"]
        )
        if request_staff_role(request) != AGENCY_ADMIN:
            # Commercial terms and team assignment are the agency admin's decision.
            fields += ["tier", "account_managers", "webhook_secret"]
        return fields

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "account_managers":
            kwargs["queryset"] = (
                db_field.related_model.objects.filter(is_staff=True, is_active=True)
                .filter(Q(groups__name__in=STAFF_GROUPS) | Q(is_superuser=True))
                .distinct()
                .order_by("username")
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description=gettext_lazy("URL вебхука amoCRM"))
    def amocrm_webhook_url(self, obj: Client) -> str:
        """What to paste into amoCRM (Настройки → Интеграции → Вебхуки): the secret is a segment
        of the path, masked in the access logs."""
        if not obj.pk or not obj.webhook_secret:
            return "—"
        path = reverse(
            "webhook-amocrm", kwargs={"client_slug": obj.slug, "secret": obj.webhook_secret}
        )
        return settings.PUBLIC_BASE_URL + path

    @admin.display(description=gettext_lazy("участников портала"), ordering="members_count")
    def members_count(self, obj: Client) -> int:
        return obj.members_count

    @admin.display(description=gettext_lazy("аккаунт-менеджеры"))
    def account_managers_list(self, obj: Client) -> str:
        return ", ".join(u.get_username() for u in obj.account_managers.all()) or "—"

    @admin.display(description=gettext_lazy("портал Битрикс24 (REST)"))
    def bitrix24_portal(self, obj: Client) -> str:
        return client_bitrix24_portal(obj) or gettext("— (не подключён)")

    def save_model(self, request: HttpRequest, obj: Client, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            url = form.cleaned_data.get("bitrix24_rest_url", "")
            wanted = url or form.cleaned_data.get("bitrix24_rest_clear")
            # Declared form fields reach the form whatever the fieldsets: only agency admins
            # (who are shown them) may change the integration.
            if wanted and request_staff_role(request) == AGENCY_ADMIN:
                client_bitrix24_rest_set(
                    client=obj, url=url, actor=request.user, source="admin", ip=request_ip(request)
                )
            return
        data = form.cleaned_data
        extra = {
            name: data[name]
            for name in (
                "legal_name",
                "inn",
                "monthly_ad_spend",
                "time_zone",
                "pd_operator_registry_number",
                "is_active",
            )
            if name in data
        }
        created = client_create(
            name=data["name"],
            tier_code=data["tier"].code,
            slug=data.get("slug") or None,
            actor=request.user,
            source="admin",
            **extra,
        )
        _adopt(obj, created)


# --------------------------------------------------------------------------------------------
# API keys


class ApiKeyAddForm(TenantAdminForm):
    scopes = forms.MultipleChoiceField(
        label=gettext_lazy("права"),
        choices=ApiKey.Scope.choices,
        initial=[ApiKey.Scope.READ, ApiKey.Scope.WRITE],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ApiKey
        fields = ("client", "name", "scopes")


class RevokedFilter(admin.SimpleListFilter):
    title = gettext_lazy("состояние")
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin: Any):
        return [("no", gettext("действует")), ("yes", gettext("отозван"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    """Keys are created by ``api_key_create`` (the raw key is shown once) and revoked, never
    deleted: the record of who had access stays."""

    delete_roles = ()
    add_form = ApiKeyAddForm
    audited_by_services = ("add",)  # api_key_created
    actions = ["revoke"]

    list_display = (
        "prefix",
        "name",
        "client",
        "scopes_display",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = (ClientListFilter, RevokedFilter)
    list_select_related = ("client",)
    search_fields = ("=prefix", "name")
    readonly_fields = (
        "client",
        "prefix",
        "scopes_display",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
    )
    fields = readonly_fields[:2] + ("name",) + readonly_fields[2:]

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        return ("client", "name", "scopes") if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return () if obj is None else self.readonly_fields

    @admin.display(description=gettext_lazy("права"))
    def scopes_display(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes or []) or "—"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        api_key, raw_key = api_key_create(
            client=form.cleaned_data["client"],
            name=form.cleaned_data.get("name", ""),
            scopes=list(form.cleaned_data["scopes"]),
            actor=request.user,
            source="admin",
        )
        _adopt(obj, api_key)
        messages.success(
            request,
            format_html(
                gettext(
                    "Новый API-ключ: <code>{}</code> — скопируйте его сейчас: он показывается один "
                    "раз и нигде не хранится (в базе только хеш)."
                ),
                raw_key,
            ),
        )

    @admin.action(description=gettext_lazy("Отозвать выбранные ключи"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True).select_related("client"):
            api_key_revoke(api_key=api_key, actor=request.user, source="admin")
            revoked += 1
        message = ngettext("Отозван %(n)s ключ.", "Отозвано %(n)s ключей.", revoked)
        self.message_user(request, message % {"n": revoked}, messages.SUCCESS)


# --------------------------------------------------------------------------------------------
# The customer base (millions of rows): exact indexed searches, no full counts


SEARCH_HELP = gettext_lazy("Точное совпадение: email, телефон в любом формате или внешний id.")


class CustomerAdminForm(TenantAdminForm):
    """Email and phone stored the way ingestion stores them (normalised), or refused."""

    def _normalised(self, name: str, normalizer: Any) -> str:
        value = (self.cleaned_data.get(name) or "").strip()
        if not value:
            return ""
        try:
            return normalizer(value)
        except NormalizationError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_email(self) -> str:
        return self._normalised("email", normalize_email)

    def clean_phone(self) -> str:
        return self._normalised("phone", normalize_phone)


class CustomerBaseAdmin(LargeTableAdminMixin, TenantScopedAdmin):
    """Shared settings of the customer, order and event lists."""

    search_fields = ("=external_id",)  # shows the search box; the look-up is below
    search_help_text = SEARCH_HELP

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        fields = ["created_at", "updated_at"]
        if obj is not None:
            fields.insert(0, "client")  # data never moves between clients
        return fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        q = self.search_q(request, queryset, search_term)
        if q is None:
            return queryset, False
        return queryset.filter(q), False

    def search_q(self, request: HttpRequest, queryset: QuerySet, term: str) -> Q | None:
        raise NotImplementedError


@admin.register(Customer)
class CustomerAdmin(CustomerBaseAdmin):
    form = CustomerAdminForm
    list_display = ("__str__", "external_id", "email", "phone", "city", "client", "updated_at")
    list_filter = (ClientListFilter,)
    list_select_related = ("client",)

    def search_q(self, request: HttpRequest, queryset: QuerySet, term: str) -> Q | None:
        return customer_identity_q(term)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        fields = [*super().get_readonly_fields(request, obj), "erased_at"]
        if obj is not None and obj.erased_at is not None:
            # Erased through a data-subject request: nothing may be filled in again by hand.
            return [f.name for f in Customer._meta.fields if f.name != "id"]
        return fields


class CustomerRefSearchMixin:
    """Orders and events: by their own external id, or by their customer's identity (resolved
    first through the customer indexes, then by customer id)."""

    def search_q(self, request: HttpRequest, queryset: QuerySet, term: str) -> Q | None:
        if not term.strip():
            return None
        customer_ids = customer_ids_search(client_ids=request_staff_client_ids(request), term=term)
        return Q(external_id=term.strip()) | Q(customer_id__in=customer_ids)


@admin.register(Order)
class OrderAdmin(CustomerRefSearchMixin, CustomerBaseAdmin):
    list_display = ("__str__", "customer", "client", "placed_at", "amount", "status", "channel")
    list_filter = (ClientListFilter, "status")
    list_select_related = ("client", "customer")
    raw_id_fields = ("customer",)


class EventTypeFilter(admin.SimpleListFilter):
    title = gettext_lazy("тип")
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any):
        return Event.Type.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(type=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(CustomerRefSearchMixin, CustomerBaseAdmin):
    list_display = ("type", "customer", "client", "occurred_at", "utm_source", "utm_medium")
    list_filter = (ClientListFilter, EventTypeFilter)
    list_select_related = ("client", "customer")
    raw_id_fields = ("customer",)


# --------------------------------------------------------------------------------------------
# CRM deals seen in webhooks (written only by clients.services.crm_webhook_ingest)


@admin.register(CrmDeal)
class CrmDealAdmin(LargeTableAdminMixin, TenantScopedAdmin):
    """Read-only: what the client's CRM hooks said about each deal, and why a deal is not an order
    yet (a won amoCRM lead waiting for its contact, an open deal...). Rows change only through
    the webhooks."""

    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None

    list_display = (
        "deal_id",
        "crm",
        "client",
        "status",
        "stage",
        "amount",
        "contact_id",
        "order_external_id",
        "skipped_reason",
        "last_payload_at",
    )
    list_filter = (ClientListFilter, "crm", "status")
    list_select_related = ("client",)
    search_fields = ("=deal_id", "=contact_id", "=order_external_id")
    search_help_text = gettext_lazy(
        "Точное совпадение: id сделки или контакта в CRM, внешний id заказа."
    )
    ordering = ("-last_payload_at", "-id")
    fields = (
        "client",
        "crm",
        "deal_id",
        "contact_id",
        "status",
        "stage",
        "amount",
        "currency",
        "created_at",
        "closed_at",
        "order_external_id",
        "skipped_reason",
        "last_payload_at",
    )
    readonly_fields = fields


# --------------------------------------------------------------------------------------------
# CSV imports


class ImportJobAddForm(TenantAdminForm):
    delimiter = forms.ChoiceField(
        label=gettext_lazy("разделитель"),
        choices=[
            (",", gettext_lazy("запятая ,")),
            (";", gettext_lazy("точка с запятой ; (Excel)")),
            ("\t", gettext_lazy("табуляция")),
            ("|", "|"),
        ],
        initial=",",
    )
    encoding = forms.ChoiceField(
        label=gettext_lazy("кодировка"),
        choices=[("utf-8", "UTF-8"), ("cp1251", "Windows-1251 (Excel)")],
        initial="utf-8",
    )

    class Meta:
        model = ImportJob
        fields = ("client", "kind", "file", "delimiter", "encoding", "partial")


@admin.register(ImportJob)
class ImportJobAdmin(JobAdminMixin, TenantScopedAdmin):
    """Upload a file (``import_job_submit``); a Celery worker runs it (``import_job_run``) while
    the page shows progress."""

    add_form = ImportJobAddForm
    audited_by_services = ("add",)
    status_colours = {ImportJob.Status.REJECTED: "#b26a00"}
    list_display = (
        "created_at",
        "client",
        "kind",
        "status_badge",
        "progress_bar",
        "rows_ok",
        "rows_rejected",
        "created_by",
    )
    list_filter = (ClientListFilter, "kind", "status")
    list_select_related = ("client", "created_by")
    detail_fields = (
        "client",
        "kind",
        "file",
        "delimiter",
        "encoding",
        "partial",
        "status_badge",
        "progress_bar",
        "rows_total",
        "rows_processed",
        "rows_ok",
        "rows_rejected",
        "rows_created",
        "rows_updated",
        "rows_unchanged",
        "error_message",
        "error_report_link",
        "created_by",
        "created_at",
        "started_at",
        "heartbeat",
        "attempt",
        "finished_at",
    )

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        return self.add_form.Meta.fields if obj is None else self.detail_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return () if obj is None else self.detail_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A job is a record of what was loaded: once uploaded it is only watched.
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description=gettext_lazy("без изменений"))
    def rows_unchanged(self, obj: ImportJob) -> int:
        return obj.rows_unchanged

    @admin.display(description=gettext_lazy("отчёт об ошибках"))
    def error_report_link(self, obj: ImportJob) -> str:
        if not obj.error_report:
            return "—"
        url = reverse(f"{self.admin_site.name}:clients_importjob_error_report", args=(obj.pk,))
        return format_html(
            gettext('<a href="{}">Скачать CSV ({} строк с ошибками)</a>'), url, obj.rows_rejected
        )

    def save_model(self, request: HttpRequest, obj: ImportJob, form: Any, change: bool) -> None:
        # Only additions reach here: a job is never changed.
        data = form.cleaned_data
        job = import_job_submit(
            client=data["client"],
            kind=data["kind"],
            file=data["file"],
            delimiter=data["delimiter"],
            encoding=data["encoding"],
            partial=data["partial"],
            actor=request.user,
            source="admin",
            ip=request_ip(request),
        )
        _adopt(obj, job)

    def response_add(self, request: HttpRequest, obj: ImportJob, post_url_continue: Any = None):
        response = super().response_add(request, obj, post_url_continue)
        if "_popup" in request.POST or "_addanother" in request.POST:
            return response
        # Straight to the job's page, which refreshes itself until the import is done.
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:clients_importjob_change", args=(obj.pk,))
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/error-report/",
                self.admin_site.admin_view(self.error_report_view),
                name="clients_importjob_error_report",
            ),
            *super().get_urls(),
        ]

    def error_report_view(self, request: HttpRequest, object_id: str) -> FileResponse:
        """The report holds customers' data: served only through the scoped admin, not as a
        public media URL."""
        job = self.get_object(request, unquote(object_id))
        if job is None or not self.has_view_permission(request, job) or not job.error_report:
            raise Http404(gettext("отчёт не найден"))
        return csv_file_response(job.error_report.open("rb"), f"import-{job.pk}-errors.csv")
