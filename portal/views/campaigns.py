"""The client's trigger chains: each chain's status, who entered (treatment and holdout), what
was sent, opened and clicked, conversions by arm and the sample-ratio warning; a chain's page
with its funnel as a chart and a table. Read-only for every member (viewers too): chains are
written in the admin and the API. Counts come from ``campaigns.funnel.chain_funnel``, the same
numbers as the admin's and the API's. Shown only when the client's tier offers trigger chains."""

from __future__ import annotations

from django.http import Http404
from django.views.generic import TemplateView

from campaigns.funnel import chain_funnel
from campaigns.models import TriggerChain
from clients.tiers import tier_offers

from ..mixins import ClientPortalMixin


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
        return context
