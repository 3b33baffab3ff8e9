"""The user's clients; straight to the dashboard when there is only one."""

from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect
from django.views.generic import TemplateView

from agency.roles import user_clients


class PortalHomeView(LoginRequiredMixin, TemplateView):
    login_url = "portal:login"
    template_name = "portal/home.html"

    def get(self, request, *args, **kwargs):
        clients = list(user_clients(request.user).order_by("name")[:2])
        if len(clients) == 1:
            return redirect("portal:dashboard", client_slug=clients[0].slug)
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["user_clients"] = user_clients(self.request.user).select_related("tier")
        return context
