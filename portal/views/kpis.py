"""The client's KPIs by month (``reports.kpis``, stored nightly): trend charts and the table.
Figures the client's tier does not include are shown as "—" with the reason. Read-only for every
member."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.generic import TemplateView

from reports.kpis import kpi_months
from reports.models import KpiMonth

from ..mixins import ClientPortalMixin

PERIODS = (12, 24, 36)

# Charts: (canvas id, title, [(figure, label)]); the labels are translated in the view.
CHARTS = (
    (
        "kpi-customers",
        _("Покупатели"),
        [
            ("active_customers", _("Активные (12 мес.)")),
            ("new_customers", _("Новые")),
            ("buyers", _("Купили в месяце")),
        ],
    ),
    (
        "kpi-money",
        _("Деньги на покупателя, ₽"),
        [
            ("arpu", _("ARPU")),
            ("aov", _("Средний чек")),
            ("historical_clv", _("Исторический CLV")),
            ("predicted_clv", _("Прогноз CLV")),
            ("cac", _("CAC")),
        ],
    ),
    (
        "kpi-rates",
        _("Удержание и повторные покупки, в процентах"),
        [
            ("retention_rate", _("Удержание")),
            ("churn_rate", _("Отток")),
            ("repeat_purchase_rate", _("Доля повторных покупок")),
        ],
    ),
    (
        "kpi-returns",
        _("Окупаемость"),
        [("roas", _("ROAS")), ("clv_roas", _("ROAS по CLV")), ("ltv_cac", _("LTV/CAC"))],
    ),
)
PERCENT = {"retention_rate", "churn_rate", "repeat_purchase_rate"}


def _number(figure: str, value):
    if value is None:
        return None
    return round(float(value) * 100, 2) if figure in PERCENT else float(value)


class KpiView(ClientPortalMixin, TemplateView):
    template_name = "portal/kpis.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        try:
            period = int(self.request.GET.get("months", PERIODS[0]))
        except ValueError:
            period = PERIODS[0]
        if period not in PERIODS:
            period = PERIODS[0]
        until = timezone.localtime(timezone.now(), self.client.tzinfo).date().replace(day=1)
        index = until.year * 12 + until.month - period
        since = dt.date(index // 12, index % 12 + 1, 1)
        rows, hidden = kpi_months(client=self.client, since=since, until=until)
        charts = []
        for canvas_id, title, series in CHARTS:
            shown = [(figure, label) for figure, label in series if figure not in hidden]
            charts.append(
                {
                    "id": canvas_id,
                    "title": title,
                    "series": [
                        {
                            "label": str(label),
                            "data": [_number(figure, row[figure]) for row in rows],
                        }
                        for figure, label in shown
                    ],
                }
            )
        context.update(
            rows=rows,
            hidden=[
                (KpiMonth._meta.get_field(figure).verbose_name, reason)
                for figure, reason in hidden.items()
            ],
            periods=PERIODS,
            period=period,
            charts=charts,
            chart={"labels": [row["month"] for row in rows], "charts": charts},
        )
        return context
