"""Admin of a client's report settings (message costs, the benchmark, attribution's half-life)."""

from django.contrib import admin

from agency.admin_base import TenantScopedAdmin

from ..models import ReportSettings


@admin.register(ReportSettings)
class ReportSettingsAdmin(TenantScopedAdmin):
    list_display = (
        "client",
        "cost_email",
        "cost_sms",
        "cost_push",
        "triggered_revenue_benchmark",
        "attribution_half_life_days",
        "revenue_interval",
    )
    list_select_related = ("client",)
