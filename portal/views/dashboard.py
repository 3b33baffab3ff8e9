"""The client's dashboard: the base in numbers, revenue by month (a chart) and what the client's
tier offers (``clients.tiers.tier_offer``: only what the platform has built)."""

from __future__ import annotations

from django.views.generic import TemplateView

from clients.selectors import client_base_summary, revenue_by_month
from clients.tiers import tier_offer

from ..mixins import ClientPortalMixin


class DashboardView(ClientPortalMixin, TemplateView):
    template_name = "portal/dashboard.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        monthly = revenue_by_month(client=self.client)
        context.update(
            summary=client_base_summary(client=self.client),
            monthly=monthly,
            chart={
                "labels": [m["month"] for m in monthly],
                "revenue": [float(m["revenue"]) for m in monthly],
                "buyers": [m["buyers"] for m in monthly],
            },
            tier=self.client.tier,
            tier_offer=tier_offer(client=self.client),
        )
        return context
