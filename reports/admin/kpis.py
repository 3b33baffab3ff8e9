"""Admin of the KPIs per month: a read-only list (the figures are computed, never typed) with a
"recompute" action that recomputes every month of the selected rows' clients."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy, ngettext

from agency.admin_base import ClientListFilter, TenantScopedAdmin
from agency.audit import audit_log, request_ip
from agency.roles import ACCOUNT_MANAGER, AGENCY_ADMIN
from clients.models import Client

from ..kpis import kpis_compute
from ..models import KpiMonth


@admin.register(KpiMonth)
class KpiMonthAdmin(TenantScopedAdmin):
    list_display = (
        "client",
        "month",
        "revenue",
        "orders",
        "new_customers",
        "active_customers",
        "retention_rate",
        "churn_rate",
        "arpu",
        "aov",
        "historical_clv",
        "predicted_clv",
        "cac",
        "ltv_cac",
        "roas",
        "cohort_clv",
        "computed_at",
    )
    list_select_related = ("client",)
    list_filter = (ClientListFilter,)
    date_hierarchy = "month"
    ordering = ("client", "-month")
    actions = ["recompute"]
    add_roles = ()
    change_roles = ()
    delete_roles = ()
    recompute_roles = (AGENCY_ADMIN, ACCOUNT_MANAGER)

    def has_recompute_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_allows(request, self.recompute_roles, obj)

    @admin.action(
        description=gettext_lazy("Пересчитать KPI клиентов выбранных строк"),
        permissions=["recompute"],
    )
    def recompute(self, request: HttpRequest, queryset: QuerySet) -> None:
        client_ids = set(queryset.values_list("client_id", flat=True))
        # Among the user's clients only (the changelist's queryset is scoped already).
        clients = Client.objects.filter(pk__in=client_ids).select_related("tier")
        months = 0
        for client in clients:
            written = kpis_compute(client=client)
            months += written
            audit_log(
                action="kpis.recomputed",
                source="admin",
                actor=request.user,
                client=client,
                details={"months": written},
                ip=request_ip(request),
            )
        message = ngettext(
            "KPI пересчитаны для %(clients)s клиента (%(months)s мес.).",
            "KPI пересчитаны для %(clients)s клиентов (%(months)s мес.).",
            len(clients),
        ) % {"clients": len(clients), "months": months}
        self.message_user(request, message, messages.SUCCESS)
