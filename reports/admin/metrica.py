"""Admin list of the uploads of offline conversions to Yandex Metrica (read-only: written by
``reports.metrica``)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy

from agency.admin_base import ClientListFilter, TenantScopedAdmin

from ..models import MetricaUpload


@admin.register(MetricaUpload)
class MetricaUploadAdmin(TenantScopedAdmin):
    list_display = (
        "created_at",
        "client",
        "counter",
        "client_id_type",
        "status",
        "rows",
        "line_quantity",
        "rejected",
        "revenue",
        "skipped",
        "remote_id",
        "error",
        "finished_at",
    )
    list_filter = (ClientListFilter, "status")
    list_select_related = ("client",)
    search_fields = ("counter", "remote_id", "comment")
    ordering = ("-id",)
    add_roles = ()
    change_roles = ()
    delete_roles = ()

    @admin.display(description=gettext_lazy("строк отклонено Метрикой"))
    def rejected(self, obj: MetricaUpload) -> str:
        return "—" if obj.rejected_lines is None else str(obj.rejected_lines)
