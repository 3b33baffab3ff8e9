"""The client's trigger chains: each chain's status, who entered (treatment and holdout), what
was sent, opened and clicked, conversions by arm and the sample-ratio warning; a chain's page
with its funnel as a chart and a table. Read-only for every member (viewers too): chains are
written in the admin and the API. Counts come from ``campaigns.funnel.chain_funnel``, the same
numbers as the admin's and the API's. Shown only when the client's tier offers trigger chains.

Results (``reports.results``): the chain's page shows the arms, the uplift with its 95 % interval
as a chart and the guards (sample ratio, not enough data, the horizon: no verdict before it) for
a period of enrolment (``?from=&to=``); the list shows a month's roll-up (``?month=YYYY-MM``):
the chains' incremental revenue and the share of revenue from triggered messages over the last
six months next to the agency's benchmark."""

from __future__ import annotations

import datetime as dt

from django.http import Http404
from django.utils import timezone
from django.views.generic import TemplateView

from campaigns.funnel import chain_funnel
from campaigns.models import TriggerChain
from clients.tiers import tier_offers
from reports.results import chain_results, client_month_rollup, triggered_revenue_share

from ..mixins import ClientPortalMixin

ROLLUP_MONTHS = 6


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _month(value: str | None) -> dt.date | None:
    try:
        year, number = (value or "").split("-")
        if len(year) != 4 or len(number) != 2:
            return None
        return dt.date(int(year), int(number), 1)
    except ValueError:
        return None


def _months_back(first: dt.date, count: int) -> list[dt.date]:
    months = [first]
    while len(months) < count:
        months.append((months[-1] - dt.timedelta(days=1)).replace(day=1))
    return list(reversed(months))


def _points(block: dict) -> dict:
    """The absolute uplift and its interval in percentage points, for the table."""
    ci = block["absolute_ci"]
    return {
        "absolute": None if block["absolute"] is None else block["absolute"] * 100,
        "ci": None if ci is None else [v * 100 for v in ci],
    }


def _uplift_chart(results: dict) -> dict:
    """Point and 95 % interval of the absolute uplift (percentage points), overall and per
    step, for the chart; rows without an interval are left out."""
    rows = [(None, results)] + [(step, step) for step in results["steps"]]
    chart: dict[str, list] = {"labels": [], "point": [], "interval": []}
    for step, figures in rows:
        block = figures["uplift"]
        if block["absolute_ci"] is None:
            continue
        chart["labels"].append("" if step is None else f"{step['position']}. {step['template']}")
        chart["point"].append(round(block["absolute"] * 100, 3))
        chart["interval"].append([round(v * 100, 3) for v in block["absolute_ci"]])
    return chart


class CampaignsMixin(ClientPortalMixin):
    def get_context_data(self, **kwargs):
        if not tier_offers(client=self.client, code="trigger_chains"):
            raise Http404("trigger chains are not in the client's tier")
        return super().get_context_data(**kwargs)


class CampaignListView(CampaignsMixin, TemplateView):
    template_name = "portal/campaigns.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        chains = list(
            self.scoped(TriggerChain)
            .exclude(status=TriggerChain.Status.ARCHIVED)
            .order_by("priority", "name")
        )
        context["rows"] = [(chain, chain_funnel(chain)) for chain in chains]
        context["tier"] = self.client.tier
        today = timezone.localdate(timezone=self.client.tzinfo).replace(day=1)
        month = _month(self.request.GET.get("month")) or today
        context["rollup"] = client_month_rollup(client=self.client, month=month)
        shares = [
            triggered_revenue_share(client=self.client, month=m)
            for m in _months_back(month, ROLLUP_MONTHS)
        ]
        context["share_chart"] = {
            "labels": [row["month"] for row in shares],
            "share": [row["triggered_share_percent"] for row in shares],
            "benchmark": [row["benchmark_percent"] for row in shares],
        }
        return context


class CampaignDetailView(CampaignsMixin, TemplateView):
    template_name = "portal/campaign_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        chain = self.get_scoped_object_or_404(TriggerChain, pk=self.kwargs["pk"])
        funnel = chain_funnel(chain)
        context.update(
            chain=chain,
            funnel=funnel,
            chart={
                "labels": [f"{s['position']}. {s['template']}" for s in funnel["steps"]],
                "sent": [s["sent"] for s in funnel["steps"]],
                "delivered": [s["delivered"] for s in funnel["steps"]],
                "opened": [s["opened"] for s in funnel["steps"]],
                "clicked": [s["clicked"] for s in funnel["steps"]],
            },
        )
        params = self.request.GET
        date_from, date_to = _date(params.get("from")), _date(params.get("to"))
        period_error = (
            (params.get("from") and date_from is None)
            or (params.get("to") and date_to is None)
            or (date_from and date_to and date_from > date_to)
        )
        if period_error:
            date_from = date_to = None
        results = chain_results(chain=chain, date_from=date_from, date_to=date_to)
        context.update(
            results=results,
            period_error=bool(period_error),
            date_from=date_from,
            date_to=date_to,
            uplift_chart=_uplift_chart(results),
            uplift_pp=_points(results["uplift"]),
        )
        return context
