"""Admin of ad spend: ad accounts (credentials write-only, saved through ``ad_account_save``;
"import now"), daily spend rows (read-only) and the CSV upload of spend
(``spend_csv_upload``)."""

from __future__ import annotations

import functools
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.admin_base import ClientListFilter, TenantScopedAdmin
from agency.audit import audit_context, audit_log, request_ip
from agency.errors import ServiceError
from agency.roles import ACCOUNT_MANAGER, AGENCY_ADMIN, staff_clients
from audiences.admin import CredentialsField, ServiceForm, _adopt

from ..accounts import ad_account_save
from ..imports import ad_account_import
from ..models import AdAccount, SpendDay
from ..spend import SPEND_CSV_OPTIONAL, SPEND_CSV_REQUIRED, spend_csv_upload

UPLOAD_ROLES = (AGENCY_ADMIN, ACCOUNT_MANAGER)  # analysts only read
CREDENTIALS_HELP = gettext_lazy(
    'JSON. Директ и Метрика: {"token"}; Roistat: {"api_key"}; Calltouch: {"client_api_id"}. '
    "Хранятся зашифрованными и здесь не показываются; при изменении пустое поле оставляет "
    "сохранённые. Адрес API — настройка развёртывания, не здесь."
)


_audited = functools.partial(audit_context, source="admin")


class AdAccountAdminForm(ServiceForm):
    credentials = CredentialsField(help_text=CREDENTIALS_HELP)

    class Meta:
        model = AdAccount
        fields = (
            "client",
            "provider",
            "name",
            "login",
            "remote_id",
            "conversion_target",
            "client_id_type",
            "is_active",
        )

    def service_call(self, **audit: Any) -> AdAccount:
        data = self.cleaned_data
        existing = self.instance if self.instance.pk else None
        return ad_account_save(
            client=data.get("client") or self.instance.client,
            account=existing,
            provider=data["provider"],
            name=data.get("name") or "",
            login=data.get("login") or "",
            remote_id=data.get("remote_id") or "",
            credentials=data.get("credentials"),
            is_active=data.get("is_active", True),
            conversion_target=data.get("conversion_target") or "",
            client_id_type=data.get("client_id_type") or AdAccount.ClientIdType.CLIENT_ID,
            **audit,
        )


@admin.register(AdAccount)
class AdAccountAdmin(TenantScopedAdmin):
    """Deletion is off (its uploads and spend name it); switch an account off instead."""

    form = AdAccountAdminForm
    audited_by_services = ("add", "change")
    delete_roles = ()
    list_display = (
        "client",
        "provider",
        "name",
        "remote_id",
        "is_active",
        "last_imported_at",
        "last_attempt_at",
        "last_error_short",
    )
    list_filter = (ClientListFilter, "provider", "is_active")
    list_select_related = ("client",)
    search_fields = ("name", "remote_id", "login")
    actions = ("import_now",)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        fields = [
            "client",
            "provider",
            "name",
            "login",
            "remote_id",
            "conversion_target",
            "client_id_type",
            "is_active",
            "credentials",
        ]
        if obj is not None:
            fields += ["last_imported_at", "last_attempt_at", "last_error", "last_result"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ()
        return ("client", "last_imported_at", "last_attempt_at", "last_error", "last_result")

    @admin.display(description=gettext_lazy("ошибка"))
    def last_error_short(self, obj: AdAccount) -> str:
        return (obj.last_error[:120] + "…") if len(obj.last_error) > 120 else obj.last_error

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        _adopt(obj, form.service_call(**_audited(request)))

    @admin.action(description=gettext_lazy("Импортировать сейчас (вчера и позавчера)"))
    def import_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not self.has_change_permission(request):
            raise PermissionDenied
        for account in queryset.select_related("client"):
            try:
                outcome = ad_account_import(account=account)
            except ServiceError as exc:
                messages.error(request, f"{account}: {exc.message}")
                continue
            audit_log(
                action="ad_account_import_requested",
                source="admin",
                actor=request.user,
                client=account.client_id,
                obj=account,
                details={"error": outcome.get("error", "")},
                ip=request_ip(request),
            )
            if outcome.get("error"):
                messages.error(request, f"{account}: {outcome['error']}")
            else:
                messages.success(request, _("%(account)s: импорт выполнен.") % {"account": account})


class SpendUploadForm(forms.Form):
    client = forms.ModelChoiceField(queryset=None, label=gettext_lazy("клиент"))
    file = forms.FileField(label=gettext_lazy("CSV-файл"))

    def __init__(self, *args: Any, clients: QuerySet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["client"].queryset = clients


@admin.register(SpendDay)
class SpendDayAdmin(TenantScopedAdmin):
    """Read-only: spend is written by the imports and the CSV upload (``upload/``), each of
    which replaces whole days."""

    list_display = (
        "day",
        "client",
        "source",
        "campaign",
        "campaign_name",
        "channel",
        "cost",
        "clicks",
        "impressions",
        "visits",
        "leads",
        "sales",
        "revenue",
    )
    list_filter = (ClientListFilter, "source", "day")
    list_select_related = ("client",)
    search_fields = ("campaign", "campaign_name", "channel")
    date_hierarchy = "day"
    ordering = ("-day", "source", "campaign")
    add_roles = ()
    change_roles = ()
    delete_roles = ()
    change_list_template = "admin/reports/spendday/change_list.html"

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self._role_allows(request, UPLOAD_ROLES):
            raise PermissionDenied
        clients = staff_clients(request.user).order_by("name")
        form = SpendUploadForm(request.POST or None, request.FILES or None, clients=clients)
        result = None
        if request.method == "POST" and form.is_valid():
            try:
                result = spend_csv_upload(
                    client=form.cleaned_data["client"],
                    content=form.cleaned_data["file"].read(),
                    **_audited(request),
                )
            except ServiceError as exc:
                form.add_error("file", exc.message)
            else:
                messages.success(
                    request,
                    _("Принято строк: %(ok)s, отклонено: %(bad)s; дни: %(days)s.")
                    % {
                        "ok": result.rows_ok,
                        "bad": result.rows_rejected,
                        "days": ", ".join(result.days) or "—",
                    },
                )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Загрузка расходов из CSV"),
            "subtitle": None,
            "opts": self.model._meta,
            "form": form,
            "result": result,
            "required": ", ".join(SPEND_CSV_REQUIRED),
            "optional": ", ".join(SPEND_CSV_OPTIONAL),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/reports/spendday/upload.html", context)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("upload/", view(self.upload_view), name="reports_spendday_upload"),
            *super().get_urls(),
        ]
