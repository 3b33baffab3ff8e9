"""The client's consent ledger checkpoints: the signed daily digests of its chain (count and
newest hash) to download and keep, so that a later truncation or a deleted tail shows."""

from __future__ import annotations

import json

from django.http import Http404, HttpResponse
from django.views.generic import TemplateView, View

from consent.checkpoints import Checkpoint, consent_checkpoint_entries

from ..mixins import ClientPortalMixin

SHOWN = 60


class ConsentLedgerView(ClientPortalMixin, TemplateView):
    template_name = "portal/consent_ledger.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        entries = consent_checkpoint_entries(client=self.client).order_by("-id")[:SHOWN]
        context["checkpoints"] = [Checkpoint.from_entry(entry) for entry in entries]
        return context


class ConsentCheckpointDigestView(ClientPortalMixin, View):
    def get(self, request, *args, **kwargs):
        entry = consent_checkpoint_entries(client=self.client).filter(pk=kwargs["pk"]).first()
        if entry is None:
            raise Http404("no such checkpoint")
        checkpoint = Checkpoint.from_entry(entry)
        body = json.dumps(checkpoint.as_digest(), ensure_ascii=False, indent=2)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        name = f"consent-ledger-{self.client.slug}-{checkpoint.date}-{checkpoint.entry_id}.json"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
