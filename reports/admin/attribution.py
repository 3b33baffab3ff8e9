"""Admin page comparing the attribution models side by side for one client: the list shows the
staff member's clients (``agency.roles.staff_clients``), each client's page the period form, the
five models per channel or campaign and the CLV-weighted view
(``reports.touchpoints.attribution_report``). A foreign or missing client is the same 404."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.admin_base import TenantScopedAdmin, access_client_by_id
from agency.i18n import in_client_zone
from agency.roles import staff_clients

from ..attribution_forms import AttributionPeriodForm, attribution_table, default_period
from ..models import AttributionReport
from ..touchpoints import attribution_report


@admin.register(AttributionReport)
class AttributionReportAdmin(TenantScopedAdmin):
    add_roles = ()
    change_roles = ()
    delete_roles = ()

    def get_urls(self):
        return [
            path(
                "<int:client_id>/compare/",
                self.admin_site.admin_view(self.compare_view),
                name="reports_attributionreport_compare",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        """The clients the staff member works with, each linking to its comparison."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        site = self.admin_site.name
        clients = staff_clients(request.user).order_by("name")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Атрибуция: сравнение моделей"),
            "subtitle": None,
            "opts": self.model._meta,
            "clients": [
                (client, reverse(f"{site}:reports_attributionreport_compare", args=[client.pk]))
                for client in clients
            ],
        }
        request.current_app = site
        return TemplateResponse(request, "admin/reports/attribution_clients.html", context)

    def compare_view(self, request: HttpRequest, client_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        client = access_client_by_id(request=request, client_id=client_id)
        today = timezone.localdate(timezone=client.tzinfo)
        form = AttributionPeriodForm(request.GET or default_period(today))
        report = table = None
        if form.is_valid():
            data = form.cleaned_data
            report = attribution_report(
                client=client,
                date_from=data["date_from"],
                date_to=data["date_to"],
                half_life_days=data.get("half_life_days"),
            )
            table = attribution_table(report, data["by"])
        context = {
            **self.admin_site.each_context(request),
            "title": _("Атрибуция: %(client)s") % {"client": client.name},
            "subtitle": None,
            "opts": self.model._meta,
            "client": client,
            "form": form,
            "report": report,
            "table": table,
            "by": form.cleaned_data.get("by", "channel") if form.is_valid() else "channel",
        }
        request.current_app = self.admin_site.name
        with in_client_zone(client):
            return TemplateResponse(request, "admin/reports/attribution.html", context).render()
