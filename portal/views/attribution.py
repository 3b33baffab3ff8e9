"""The client's attribution: orders and revenue credited to channels or campaigns under the five
models side by side (a grouped bar chart and the table), and the predicted CLV of the customers
each channel brought. Figures from ``reports.touchpoints.attribution_report``, the same as the
admin's page and the API's. Read-only for every member."""

from __future__ import annotations

from django.utils import timezone
from django.views.generic import TemplateView

from reports.attribution_forms import AttributionPeriodForm, attribution_table, default_period
from reports.touchpoints import attribution_report

from ..mixins import ClientPortalMixin


class AttributionView(ClientPortalMixin, TemplateView):
    template_name = "portal/attribution.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        today = timezone.localdate(timezone=self.client.tzinfo)
        form = AttributionPeriodForm(self.request.GET or default_period(today))
        report = table = None
        by = "channel"
        if form.is_valid():
            data = form.cleaned_data
            by = data["by"]
            report = attribution_report(
                client=self.client,
                date_from=data["date_from"],
                date_to=data["date_to"],
                half_life_days=data.get("half_life_days"),
            )
            table = attribution_table(report, by)
        context.update(form=form, report=report, table=table, by=by)
        return context
