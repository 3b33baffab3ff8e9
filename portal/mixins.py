"""The portal's one tenancy rule: every portal view acts for the client named in its URL, and
only for a signed-in user who may see that client; anyone else gets the same 404. A page may
also ask for a membership role (``allowed_roles``); a member with another role gets a 403.
Every page of a client shows times in the client's time zone (``agency.i18n``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404

from agency.i18n import in_client_zone
from agency.roles import staff_role, user_clients
from agency.tenancy import get_scoped_object_or_404
from clients.selectors import membership_role
from clients.tiers import tier_offers

STAFF = "staff"


class ClientPortalMixin(LoginRequiredMixin):
    """Resolves ``self.client`` from the ``client_slug`` URL argument among the user's clients,
    and ``self.portal_role`` (the membership role, or "staff" for agency staff working with the
    client)."""

    login_url = "portal:login"
    #: Membership roles that may open the page; None lets every member in. Staff always may.
    allowed_roles: tuple[str, ...] | None = None

    def dispatch(self, request, *args: Any, **kwargs: Any):
        if request.user.is_authenticated:
            client = user_clients(request.user).filter(slug=kwargs.get("client_slug")).first()
            if client is None:
                raise Http404("client not found")
            self.client = client
            role = membership_role(user=request.user, client=client)
            self.portal_role = role or (STAFF if staff_role(request.user) else None)
            if (
                self.allowed_roles is not None
                and self.portal_role != STAFF
                and self.portal_role not in self.allowed_roles
            ):
                raise PermissionDenied("this page needs another portal role")
            with in_client_zone(client):
                response = super().dispatch(request, *args, **kwargs)
                if hasattr(response, "render") and not response.is_rendered:
                    response.render()  # inside the zone: a TemplateResponse renders late
                return response
        return super().dispatch(request, *args, **kwargs)

    def scoped(self, model: type[models.Model]) -> models.QuerySet:
        return model.objects.for_client(self.client)

    def get_scoped_object_or_404(self, model: type[models.Model], **lookup: Any) -> models.Model:
        return get_scoped_object_or_404(model, self.client, **lookup)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["client"] = self.client
        context["portal_role"] = self.portal_role
        context["user_clients"] = user_clients(self.request.user)
        context["shows_campaigns"] = tier_offers(client=self.client, code="trigger_chains")
        return context
